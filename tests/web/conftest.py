"""Fixtures for the web-tier tests (defined in storefront.py): ``store``, ``catalogue``."""

from storefront import anyio_backend, catalogue, store  # noqa: F401 - re-exported fixtures
