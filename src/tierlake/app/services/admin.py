"""Back office: products, prices, stock and categories."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tierlake.app.errors import ConflictError, InvalidInputError
from tierlake.app.schemas import (
    CategoryCreate,
    CategoryPublic,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    StockSet,
)
from tierlake.app.services.catalogue import category_public, find_product, product_public
from tierlake.data.db import Database
from tierlake.data.schema import Category, Inventory, Product, utcnow

MAX_STOCK = 1_000_000_000


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:150] or "product"


def _category(s: Session, slug: str) -> Category:
    category = s.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        raise InvalidInputError(
            f"No category {slug!r}; create it first or pick one from GET /api/v1/categories.",
            fields=[{"field": "body.category", "message": "unknown category"}])
    return category


def create_category(db: Database, body: CategoryCreate) -> CategoryPublic:
    def _create(s: Session) -> CategoryPublic:
        if s.scalar(select(Category.id).where(Category.slug == body.slug)) is not None:
            raise ConflictError(f"Category {body.slug!r} exists already.", code="slug_taken")
        category = Category(slug=body.slug, name=body.name, description=body.description)
        s.add(category)
        s.flush()
        return category_public(category)

    try:
        return db.write(_create)
    except IntegrityError as exc:
        raise ConflictError(f"Category {body.slug!r} exists already.", code="slug_taken") from exc


def create_product(db: Database, body: ProductCreate) -> ProductPublic:
    slug = body.slug or slugify(body.name)

    def _create(s: Session) -> ProductPublic:
        for column, value, field in ((Product.sku, body.sku, "sku"), (Product.slug, slug, "slug")):
            if s.scalar(select(Product.id).where(column == value)) is not None:
                raise ConflictError(f"A product with {field} {value!r} exists already.",
                                    code=f"{field}_taken",
                                    fields=[{"field": f"body.{field}", "message": "taken"}])
        product = Product(sku=body.sku, slug=slug, name=body.name, description=body.description,
                          category=_category(s, body.category), price_cents=body.price_cents)
        product.inventory = Inventory(quantity=body.stock)
        s.add(product)
        s.flush()
        return product_public(product)

    try:
        return db.write(_create)
    except IntegrityError as exc:
        raise ConflictError("A product with that SKU or slug exists already.",
                            code="product_exists") from exc


def update_product(db: Database, ref: int, body: ProductUpdate) -> ProductPublic:
    def _update(s: Session) -> ProductPublic:
        product = find_product(s, ref)
        if body.name is not None:
            product.name = body.name
        if body.description is not None:
            product.description = body.description
        if body.price_cents is not None:
            product.price_cents = body.price_cents
        if body.category is not None:
            product.category = _category(s, body.category)
        if body.active is not None and body.active != product.active:
            product.active = body.active
            product.retired_at = None if body.active else utcnow()
        s.flush()
        return product_public(product)

    return db.write(_update)


def retire_product(db: Database, ref: int) -> None:
    update_product(db, ref, ProductUpdate(active=False))


def set_stock(db: Database, ref: int, body: StockSet) -> ProductPublic:
    if (body.quantity is None) == (body.delta is None):
        raise InvalidInputError("Send exactly one of `quantity` (new level) or `delta` (change).",
                                fields=[{"field": "body", "message": "quantity or delta"}])

    def _set(s: Session) -> ProductPublic:
        product = find_product(s, ref)
        now = utcnow()
        if product.inventory is None:
            product.inventory = Inventory(quantity=0)
            s.flush()
        new_level: int | ColumnElement[int]
        if body.quantity is not None:
            new_level = body.quantity
            guard = Inventory.quantity >= 0
        else:
            new_level = Inventory.quantity + body.delta
            guard = (Inventory.quantity + body.delta >= 0) & (
                Inventory.quantity + body.delta <= MAX_STOCK)
        changed = cast(CursorResult[Any], s.execute(
            update(Inventory).where(Inventory.product_id == product.id, guard)
            .values(quantity=new_level, updated_at=now)
            .execution_options(synchronize_session=False)
        )).rowcount
        if changed != 1:
            raise ConflictError(
                f"Stock of {product.name!r} would leave 0..{MAX_STOCK}; it stays at "
                f"{product.inventory.quantity}.", code="stock_out_of_range")
        s.refresh(product.inventory)
        return product_public(product)

    return db.write(_set)
