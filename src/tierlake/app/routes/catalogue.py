"""Catalogue endpoints: categories, product listing and search, product detail.

The endpoints are ``async`` and make one thread-pool hop each, for the database work, and
return the JSON they serialised (``response_model`` stays for the OpenAPI schema): as sync
endpoints FastAPI also hopped to the pool for the dependency and to validate the
response again (docs/benchmarks.md measures both).

Their answers go through the cache (:mod:`tierlake.app.cache`) as the JSON bytes sent: the
category list and catalogue and category pages in the ``catalogue`` namespace, a product's
detail in its own (by id; by slug in ``catalogue``). Search results (``q``) are not cached.
An in-process hit is answered without the thread-pool hop.

Every one of these reads may go to a read replica (``Database`` with
``TIERLAKE_DATABASE_REPLICA_URLS``). A search reads whatever the replica has (``STALE_OK``);
a cache fill first waits until the replica has everything the primary had committed when the
fill began (``CACHE_FILL``: ``read_your_writes``), so a fill that follows an invalidation
never stores the value from before the write for a whole TTL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from tierlake.app.cache import CATALOGUE, Cache, product_ns
from tierlake.app.deps import DB, AppCache
from tierlake.app.schemas import NO_NUL, CategoryPublic, ErrorResponse, Page, ProductPublic
from tierlake.app.services import catalogue
from tierlake.app.services.catalogue import Sort
from tierlake.data.db import Database

STALE_OK: dict[str, bool] = {"stale_ok": True}
CACHE_FILL: dict[str, bool] = {"stale_ok": True, "read_your_writes": True}

router = APIRouter(tags=["catalogue"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}

_CATEGORIES = TypeAdapter(list[CategoryPublic])


def _json(model: BaseModel | bytes) -> Response:
    body = model if isinstance(model, bytes) else model.model_dump_json().encode()
    return Response(body, media_type="application/json")


@router.get("/categories", response_model=list[CategoryPublic])
async def list_categories(db: DB, cache: AppCache) -> Response:
    """Every category, with the number of products on sale in it."""
    return _json(await cache.aload("catalogue", CATALOGUE, "categories", lambda: (
        _CATEGORIES.dump_json(db.reading(catalogue.list_categories, **CACHE_FILL)))))


class ListingQuery(BaseModel):
    """The listing's query parameters, validated as one model: per-parameter solving was a
    third of the catalogue's event-loop CPU (docs/benchmarks.md)."""

    category: str | None = Field(None, max_length=80, pattern=NO_NUL,
                                 description="Category slug.")
    q: str | None = Field(None, max_length=200, pattern=NO_NUL,
                          description="Words to search for.")
    page: int = Field(1, ge=1, le=100_000, description="1-based page number.")
    page_size: int = Field(24, ge=1, le=100, description="Items per page.")
    sort: Sort = "relevance"


@router.get("/products", response_model=Page[ProductPublic], responses=NOT_FOUND)
async def list_products(request: Request, query: Annotated[ListingQuery, Query()]) -> Response:
    """Products on sale, filtered by category and search words, one page at a time."""
    db: Database = request.app.state.db
    cache: Cache = request.app.state.cache

    def load(searching: bool = False) -> bytes:
        return db.run(lambda conn: catalogue.listing_json(
            conn, category=query.category, q=query.q, page=query.page,
            page_size=query.page_size, sort=query.sort,
        ), **(STALE_OK if searching else CACHE_FILL))

    if query.q is not None and query.q.strip():
        return _json(await run_in_threadpool(load, True))
    key = f"products:{query.category or ''}:{query.page}:{query.page_size}:{query.sort}"
    return _json(await cache.aload("catalogue", CATALOGUE, key, load))


@router.get("/products/{ref}", response_model=ProductPublic, responses=NOT_FOUND)
async def read_product(
    db: DB,
    cache: AppCache,
    ref: Annotated[str, Path(max_length=160, description="Product id or slug.", pattern=NO_NUL)],
) -> Response:
    """One product by id or slug (retired products too, marked `active: false`)."""
    def load() -> bytes:
        return db.reading(lambda s: catalogue.product_public(catalogue.find_product(s, ref)),
                          **CACHE_FILL).model_dump_json().encode()

    product_id = catalogue.product_id_of(ref)
    if product_id is not None:
        return _json(await cache.aload("product", product_ns(product_id), "detail", load))
    return _json(await cache.aload("product", CATALOGUE, f"slug:{ref}", load))
