"""Catalogue endpoints: categories, product listing and search, product detail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from tierlake.app.deps import DB
from tierlake.app.schemas import NO_NUL, CategoryPublic, ErrorResponse, Page, ProductPublic
from tierlake.app.services import catalogue
from tierlake.app.services.catalogue import Sort

router = APIRouter(tags=["catalogue"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}

PageNo = Annotated[int, Query(ge=1, le=100_000, description="1-based page number.")]
PageSize = Annotated[int, Query(ge=1, le=100, description="Items per page.")]


@router.get("/categories", response_model=list[CategoryPublic])
def list_categories(db: DB) -> list[CategoryPublic]:
    """Every category, with the number of products on sale in it."""
    with db.read() as s:
        return catalogue.list_categories(s)


@router.get("/products", response_model=Page[ProductPublic], responses=NOT_FOUND)
def list_products(
    db: DB,
    category: Annotated[str | None, Query(max_length=80, description="Category slug.",
                                          pattern=NO_NUL)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Words to search for.",
                                   pattern=NO_NUL)] = None,
    page: PageNo = 1,
    page_size: PageSize = 24,
    sort: Sort = "relevance",
) -> Page[ProductPublic]:
    """Products on sale, filtered by category and search words, one page at a time."""
    with db.read() as s:
        return catalogue.list_products(s, category=category, q=q, page=page,
                                       page_size=page_size, sort=sort)


@router.get("/products/{ref}", response_model=ProductPublic, responses=NOT_FOUND)
def read_product(
    db: DB,
    ref: Annotated[str, Path(max_length=160, description="Product id or slug.", pattern=NO_NUL)],
) -> ProductPublic:
    """One product by id or slug (retired products too, marked `active: false`)."""
    with db.read() as s:
        return catalogue.product_public(catalogue.find_product(s, ref))
