"""The catalogue: categories, product listing, search and detail.

Listing pages select the twelve columns a page shows (SQLAlchemy Core, no ORM objects:
hydrating products with their category and stock, timestamps included, was most of a
page's cost) and are serialised straight from those typed columns: validating them into
models again was a tenth of a page's CPU (docs/benchmarks.md). Their statements are built
once per shape (filters, number of search words, sort) with bound parameters, and then
reused: only the values change per request.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Literal

from sqlalchemy import Connection, Select, String, bindparam, case, func, or_, select
from sqlalchemy.orm import Session

from tierlake.app.errors import NotFoundError
from tierlake.app.schemas import CategoryPublic, Page, ProductPublic
from tierlake.data.schema import Category, Inventory, Product

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


_SORTS: dict[str, list[Any]] = {
    "name": [Product.name, Product.id],
    "price_asc": [Product.price_cents, Product.id],
    "price_desc": [Product.price_cents.desc(), Product.id],
    "newest": [Product.created_at.desc(), Product.id.desc()],
}
_CATEGORY_BY_SLUG = select(Category.id).where(Category.slug == bindparam("category"))


def _filtered(query: Select, category: bool, words: int, include_retired: bool
              ) -> Select:
    """``query`` restricted to the listing's filters, as bound parameters: ``category``
    (a slug) and ``w0`` ... (``LIKE`` patterns, one per search word)."""
    if not include_retired:
        query = query.where(Product.active.is_(True))
    if category:
        query = query.where(Category.slug == bindparam("category"))
    for n in range(words):
        pattern = bindparam(f"w{n}", type_=String())
        query = query.where(or_(
            func.lower(Product.name).like(pattern, escape="\\"),
            func.lower(Product.description).like(pattern, escape="\\"),
            func.lower(Product.sku).like(pattern, escape="\\"),
        ))
    return query


@functools.lru_cache(maxsize=256)
def _listing(category: bool, words: int, sort: str, include_retired: bool
             ) -> tuple[Select, Select]:
    """The count and the page statements for one shape of listing, built once."""
    count: Select = select(func.count(Product.id)).select_from(Product)
    if category:
        count = count.join(Category, Category.id == Product.category_id)
    count = _filtered(count, category, words, include_retired)
    order = _SORTS.get(sort)
    if order is None:  # relevance: name matches first when searching, else by name
        order = [Product.name, Product.id]
        if words:
            order.insert(0, case((func.lower(Product.name).like(bindparam("whole"), escape="\\"),
                                  0), else_=1))
    page: Select = (
        select(Product.id, Product.sku, Product.slug, Product.name, Product.description,
               Product.price_cents, Product.active, Category.id.label("c_id"),
               Category.slug.label("c_slug"), Category.name.label("c_name"),
               Category.description.label("c_description"), Inventory.quantity)
        .select_from(Product)
        .join(Category, Category.id == Product.category_id)
        .outerjoin(Inventory, Inventory.product_id == Product.id)
    )
    page = (_filtered(page, category, words, include_retired).order_by(*order)
            .limit(bindparam("limit")).offset(bindparam("offset")))
    return count, page


def listing(
    s: Connection | Session, *, category: str | None = None, q: str | None = None,
    page: int = 1, page_size: int = 24, sort: Sort = "relevance", include_retired: bool = False,
) -> dict[str, Any]:
    """One listing page as the plain data of a ``Page[ProductPublic]`` (its field order):
    built from typed columns, it needs no validation to be sent (:func:`listing_json`)."""
    q = (q or "").strip() or None
    params: dict[str, Any] = {"limit": page_size, "offset": (page - 1) * page_size}
    if category:
        if s.execute(_CATEGORY_BY_SLUG, {"category": category}).scalar() is None:
            raise NotFoundError(f"No category {category!r}; GET /api/v1/categories lists them.")
        params["category"] = category
    words = q.split()[:8] if q else []
    for n, word in enumerate(words):
        params[f"w{n}"] = _like(word)
    if q:
        params["whole"] = _like(q)
    count_stmt, page_stmt = _listing(bool(category), len(words), sort, include_retired)
    total = s.execute(count_stmt, params).scalar() or 0
    items = []
    for (pid, sku, slug, name, description, price, active, cid, cslug, cname, cdescription,
         quantity) in s.execute(page_stmt, params):
        stock = quantity if quantity is not None else 0
        items.append({
            "id": pid, "sku": sku, "slug": slug, "name": name, "description": description,
            "price_cents": price,
            "category": {"id": cid, "slug": cslug, "name": cname, "description": cdescription,
                         "product_count": 0},
            "active": bool(active), "in_stock": bool(active) and stock > 0, "stock": stock,
        })
    return {"items": items, "total": total, "page": page, "page_size": page_size,
            "pages": max(1, math.ceil(total / page_size))}


def listing_json(s: Connection | Session, **filters: Any) -> bytes:
    """:func:`listing` as the JSON the API sends (what ``Page[ProductPublic]`` would dump:
    compact, UTF-8; ``tests/api/test_catalogue.py`` holds it to the model)."""
    return json.dumps(listing(s, **filters), ensure_ascii=False,
                      separators=(",", ":")).encode()


def list_products(s: Connection | Session, **filters: Any) -> Page[ProductPublic]:
    """:func:`listing` as the model (the back office's listing)."""
    return Page[ProductPublic].model_validate(listing(s, **filters))


def product_id_of(ref: str | int) -> int | None:
    """The id ``ref`` names, or None if it is a slug."""
    text = str(ref)
    # isascii: "²" and other Unicode digits pass isdigit() but not int()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 16 else None


def find_product(s: Session, ref: str | int) -> Product:
    """A product by id or slug, retired ones included."""
    product_id = product_id_of(ref)
    where = Product.id == product_id if product_id is not None else Product.slug == str(ref)
    product = s.scalar(select(Product).where(where))
    if product is None:
        raise NotFoundError(f"No product {ref!r}.")
    return product
