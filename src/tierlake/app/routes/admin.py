"""Back-office endpoints (administrators only): products, prices, stock, categories.

Every change invalidates what the cache shows of it once the service has committed it:
the catalogue (pages, category counts) and the product's own detail.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tierlake.app.cache import CATALOGUE
from tierlake.app.deps import DB, AppCache, CurrentAdmin
from tierlake.app.routes.ids import ProductId
from tierlake.app.schemas import (
    NO_NUL,
    CategoryCreate,
    CategoryPublic,
    ErrorResponse,
    Page,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    StockSet,
)
from tierlake.app.services import admin, catalogue

router = APIRouter(prefix="/admin", tags=["admin"], responses={
    401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}


@router.get("/products", response_model=Page[ProductPublic])
def list_products(
    db: DB, _: CurrentAdmin,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
    include_retired: bool = True,
) -> Page[ProductPublic]:
    """Every product with its stock, retired ones included by default."""
    with db.read() as s:
        return catalogue.list_products(s, q=q, page=page, page_size=page_size, sort="name",
                                       include_retired=include_retired)


@router.post("/products", response_model=ProductPublic, status_code=201, responses=ERRORS)
def create_product(db: DB, cache: AppCache, _: CurrentAdmin, body: ProductCreate
                   ) -> ProductPublic:
    """Add a product to the catalogue with its opening stock."""
    product = admin.create_product(db, body)
    cache.invalidate_products([product.id])
    return product


@router.patch("/products/{product_id}", response_model=ProductPublic, responses=ERRORS)
def update_product(db: DB, cache: AppCache, _: CurrentAdmin, product_id: ProductId,
                   body: ProductUpdate) -> ProductPublic:
    """Change name, description, category, price, or retire/restore (`active`)."""
    product = admin.update_product(db, product_id, body)
    cache.invalidate_products([product.id])
    return product


@router.put("/products/{product_id}/stock", response_model=ProductPublic, responses=ERRORS)
def set_stock(db: DB, cache: AppCache, _: CurrentAdmin, product_id: ProductId,
              body: StockSet) -> ProductPublic:
    """Set the stock level (`quantity`) or change it atomically (`delta`)."""
    product = admin.set_stock(db, product_id, body)
    cache.invalidate_products([product.id])
    return product


@router.delete("/products/{product_id}", status_code=204, response_class=Response,
               responses=ERRORS)
def retire_product(db: DB, cache: AppCache, _: CurrentAdmin, product_id: ProductId
                   ) -> Response:
    """Retire a product: it leaves the catalogue; its order history stays."""
    admin.retire_product(db, product_id)
    cache.invalidate_products([product_id])
    return Response(status_code=204)


@router.post("/categories", response_model=CategoryPublic, status_code=201, responses=ERRORS)
def create_category(db: DB, cache: AppCache, _: CurrentAdmin, body: CategoryCreate
                    ) -> CategoryPublic:
    """Add a category."""
    category = admin.create_category(db, body)
    cache.invalidate([CATALOGUE])
    return category
