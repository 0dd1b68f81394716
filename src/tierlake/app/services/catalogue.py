"""The catalogue: categories, product listing, search and detail."""

from __future__ import annotations

import math
from typing import Any, Literal

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session

from tierlake.app.errors import NotFoundError
from tierlake.app.schemas import CategoryPublic, Page, ProductPublic
from tierlake.data.schema import Category, Product

Sort = Literal["relevance", "name", "price_asc", "price_desc", "newest"]


def category_public(c: Category, product_count: int = 0) -> CategoryPublic:
    return CategoryPublic(id=c.id, slug=c.slug, name=c.name, description=c.description,
                          product_count=product_count)


def product_public(p: Product) -> ProductPublic:
    stock = p.inventory.quantity if p.inventory is not None else 0
    return ProductPublic(
        id=p.id, sku=p.sku, slug=p.slug, name=p.name, description=p.description,
        price_cents=p.price_cents, category=category_public(p.category), active=p.active,
        in_stock=p.active and stock > 0, stock=stock,
    )


def list_categories(s: Session) -> list[CategoryPublic]:
    counts: dict[int, int] = {
        cid: n for cid, n in s.execute(
            select(Product.category_id, func.count())
            .where(Product.active.is_(True))
            .group_by(Product.category_id))
    }
    return [category_public(c, counts.get(c.id, 0))
            for c in s.scalars(select(Category).order_by(Category.name))]


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(query: Select, category: str | None, q: str | None, include_retired: bool) -> Select:
    if not include_retired:
        query = query.where(Product.active.is_(True))
    if category:
        query = query.join(Category, Category.id == Product.category_id).where(
            Category.slug == category)
    if q:
        for word in q.split()[:8]:
            pattern = _like(word)
            query = query.where(or_(
                func.lower(Product.name).like(pattern, escape="\\"),
                func.lower(Product.description).like(pattern, escape="\\"),
                func.lower(Product.sku).like(pattern, escape="\\"),
            ))
    return query


def list_products(
    s: Session, *, category: str | None = None, q: str | None = None, page: int = 1,
    page_size: int = 24, sort: Sort = "relevance", include_retired: bool = False,
) -> Page[ProductPublic]:
    q = (q or "").strip() or None
    if category and s.scalar(select(Category.id).where(Category.slug == category)) is None:
        raise NotFoundError(f"No category {category!r}; GET /api/v1/categories lists them.")
    total = s.scalar(_filtered(select(func.count(Product.id)), category, q, include_retired)) or 0
    sorts: dict[str, list[Any]] = {
        "name": [Product.name, Product.id],
        "price_asc": [Product.price_cents, Product.id],
        "price_desc": [Product.price_cents.desc(), Product.id],
        "newest": [Product.created_at.desc(), Product.id.desc()],
    }
    order = sorts.get(sort)
    if order is None:  # relevance: name matches first when searching, else by name
        order = [Product.name, Product.id]
        if q:
            order.insert(0, case((func.lower(Product.name).like(_like(q), escape="\\"), 0),
                                 else_=1))
    rows = s.scalars(
        _filtered(select(Product), category, q, include_retired)
        .order_by(*order).limit(page_size).offset((page - 1) * page_size)
    ).unique()
    return Page[ProductPublic](
        items=[product_public(p) for p in rows], total=total, page=page, page_size=page_size,
        pages=max(1, math.ceil(total / page_size)),
    )


def find_product(s: Session, ref: str | int) -> Product:
    """A product by id or slug, retired ones included."""
    text = str(ref)
    # isascii: "²" and other Unicode digits pass isdigit() but not int()
    numeric = text.isascii() and text.isdigit() and len(text) < 16
    where = Product.id == int(text) if numeric else Product.slug == text
    product = s.scalar(select(Product).where(where))
    if product is None:
        raise NotFoundError(f"No product {ref!r}.")
    return product
