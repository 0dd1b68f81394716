"""Exceptions shared by every tier.

Each error says what went wrong and what to do. ``transient`` tells retry and
health logic whether trying again later can help.
"""

from __future__ import annotations


class TierlakeError(Exception):
    """Base of every error tierlake raises on purpose."""

    transient = False


class ConfigError(TierlakeError, ValueError):
    """A setting is missing or wrong; the message names the setting and the fix."""


class DatabaseUnavailableError(TierlakeError, ConnectionError):
    """The database cannot be reached right now."""

    transient = True


class AppTierUnavailableError(TierlakeError, ConnectionError):
    """The web tier cannot reach the app tier."""

    transient = True
