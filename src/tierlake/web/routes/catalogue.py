"""Browsing: home, category pages, search, product pages."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierlake.web.common import api, int_param, page_window, track, track_page
from tierlake.web.render import SORTS, render

PAGE_SIZE = 24
SORT_KEYS = {key for key, _ in SORTS}


def _sort(request: Request, default: str) -> str:
    sort = request.query_params.get("sort", default)
    return sort if sort in SORT_KEYS else default


async def home(request: Request) -> Response:
    categories = await api(request).get("/categories")
    newest = await api(request).get("/products", params={"sort": "newest", "page_size": 8})
    return render(request, "home.html", {
        "categories": categories, "products": newest["items"], "total": newest["total"],
    })


async def _listing(request: Request, params: dict[str, Any], default_sort: str) -> dict:
    page = int_param(request.query_params.get("page"), 1)
    sort = _sort(request, default_sort)
    result = await api(request).get(
        "/products", params={**params, "page": page, "page_size": PAGE_SIZE, "sort": sort}
    )
    return {"result": result, "sort": sort,
            "page_links": page_window(result["page"], result["pages"])}


async def category(request: Request) -> Response:
    slug = request.path_params["slug"]
    categories = await api(request).get("/categories")
    current = next((c for c in categories if c["slug"] == slug), None)
    if current is None:
        raise HTTPException(404)
    track_page(request, category=slug)
    listing = await _listing(request, {"category": slug}, "name")
    return render(request, "listing.html", {
        **listing, "category": current, "categories": categories,
        "heading": current["name"], "mode": "category",
    })


async def search(request: Request) -> Response:
    q = request.query_params.get("q", "").strip()[:200]
    context: dict[str, Any] = {"q": q, "heading": "Search", "mode": "search"}
    if q:
        track_page(request, query=q)
        listing = await _listing(request, {"q": q}, "relevance")
        if int_param(request.query_params.get("page"), 1) == 1:
            track(request, "search", query=q)
        context.update(listing, heading=f"Results for \u201c{q}\u201d")
    return render(request, "listing.html", context)


async def product(request: Request) -> Response:
    slug = request.path_params["slug"]
    item = await api(request).get(f"/products/{slug}")
    track_page(request, product_id=item["id"], category=item["category"]["slug"])
    max_qty = max(1, min(100, item["stock"]))
    return render(request, "product.html", {"product": item, "max_qty": max_qty})


routes = [
    Route("/", home, name="home"),
    Route("/c/{slug}", category, name="category"),
    Route("/search", search, name="search"),
    Route("/p/{slug}", product, name="product"),
]
