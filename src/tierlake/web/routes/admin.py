"""Back office: product table, create/edit products, stock, categories (admins only).

The app tier is the authority on who is an administrator: its admin endpoints
answer 403 to anyone else, which the web tier shows as a 403 page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierlake.web.client import ApiError
from tierlake.web.common import (
    api,
    flash,
    form_data,
    int_param,
    page_window,
    parse_price,
    redirect,
    require_login,
)
from tierlake.web.render import error_page, render

PAGE_SIZE = 25
_RENAMED = {"price_cents": "price", "delta": "quantity"}


def _errors(exc: ApiError) -> dict[str, str]:
    return {_RENAMED.get(k, k): v for k, v in exc.field_errors().items()}


async def _require_admin(request: Request) -> tuple[str, Response | None]:
    auth = require_login(request)
    me = await api(request).get("/me", token=auth.token)
    if not me.get("is_admin"):
        return auth.token, error_page(request, 403, "Administrators only",
                                      "This part of the store is for administrators.",
                                      action="Go to the home page", action_url="/")
    return auth.token, None


async def _admin_page(request: Request, token: str, **extra: Any) -> Response:
    q = request.query_params.get("q", "").strip()[:200]
    page = int_param(request.query_params.get("page"), 1)
    result = await api(request).get("/admin/products", token=token, params={
        "q": q, "page": page, "page_size": PAGE_SIZE, "include_retired": "true"})
    categories = await api(request).get("/categories")
    status = extra.pop("status", 200)
    return render(request, "admin.html", {
        "result": result, "q": q, "categories": categories,
        "page_links": page_window(result["page"], result["pages"]), **extra,
    }, status=status)


async def admin_home(request: Request) -> Response:
    auth = require_login(request)
    return await _admin_page(request, auth.token)


async def create_product(request: Request) -> Response:
    auth = require_login(request, "/admin")
    form = await form_data(request)
    body: dict[str, Any] = {
        "sku": form.get("sku", "").upper(), "name": form.get("name", ""),
        "description": form.get("description", ""), "category": form.get("category", ""),
        "stock": int_param(form.get("stock"), 0, lo=0, hi=1_000_000_000),
    }
    if form.get("slug"):
        body["slug"] = form["slug"]
    errors = _take_price(form, body)
    if not errors:
        try:
            product = await api(request).post("/admin/products", token=auth.token, json=body)
        except ApiError as exc:
            if exc.status not in (404, 409, 422):
                raise
            errors = _errors(exc) or {"sku": exc.message}
        else:
            flash(request, f"Created {product['name']} ({product['sku']}).")
            return redirect(f"/admin/products/{product['id']}")
    return await _admin_page(request, auth.token, create_form=form, create_errors=errors,
                             status=422)


async def create_category(request: Request) -> Response:
    auth = require_login(request, "/admin")
    form = await form_data(request)
    body = {"slug": form.get("slug", ""), "name": form.get("name", ""),
            "description": form.get("description", "")}
    try:
        category = await api(request).post("/admin/categories", token=auth.token, json=body)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        return await _admin_page(request, auth.token, category_form=form,
                                 category_errors=_errors(exc) or {"slug": exc.message},
                                 status=422)
    flash(request, f"Created category {category['name']}.")
    return redirect("/admin")


async def edit_page(request: Request) -> Response:
    token, denied = await _require_admin(request)
    if denied is not None:
        return denied
    product = await api(request).get(f"/products/{request.path_params['product_id']}")
    categories = await api(request).get("/categories")
    return render(request, "admin_product.html", {"product": product,
                                                   "categories": categories})


async def update_product(request: Request) -> Response:
    product_id = request.path_params["product_id"]
    auth = require_login(request, f"/admin/products/{product_id}")
    form = await form_data(request)
    body: dict[str, Any] = {
        "name": form.get("name", ""), "description": form.get("description", ""),
        "category": form.get("category", ""), "active": form.get("active") == "on",
    }
    errors = _take_price(form, body)
    if not errors:
        try:
            product = await api(request).patch(f"/admin/products/{product_id}",
                                               token=auth.token, json=body)
        except ApiError as exc:
            if exc.status not in (409, 422):
                raise
            errors = _errors(exc) or {"name": exc.message}
        else:
            flash(request, f"Saved {product['name']}.")
            return redirect(f"/admin/products/{product_id}")
    product = await api(request).get(f"/products/{product_id}")
    categories = await api(request).get("/categories")
    return render(request, "admin_product.html", {
        "product": product, "categories": categories, "form": form, "errors": errors,
    }, status=422)


async def set_stock(request: Request) -> Response:
    product_id = request.path_params["product_id"]
    auth = require_login(request, "/admin")
    form = await form_data(request)
    back = "/admin" if form.get("return_to") == "list" else f"/admin/products/{product_id}"
    if form.get("return_to") == "list" and form.get("list_query"):
        back = "/admin?" + form["list_query"] if form["list_query"].isprintable() else "/admin"
    text = form.get("quantity", "")
    if not (text.isascii() and text.lstrip("+-").isdigit()):  # "²" passes isdigit()
        flash(request, "Enter a whole number of items for the stock level.", "error")
        return redirect(back)
    body = ({"delta": int(text)} if text[0] in "+-" else {"quantity": int(text)})
    try:
        product = await api(request).put(f"/admin/products/{product_id}/stock",
                                         token=auth.token, json=body)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        flash(request, exc.message, "error")
        return redirect(back)
    flash(request, f"Stock of {product['name']} is now {product['stock']}.")
    return redirect(back)


routes = [
    Route("/admin", admin_home, methods=["GET"], name="admin"),
    Route("/admin/products", create_product, methods=["POST"], name="admin_create"),
    Route("/admin/categories", create_category, methods=["POST"], name="admin_category"),
    Route("/admin/products/{product_id:int}", edit_page, methods=["GET"], name="admin_edit"),
    Route("/admin/products/{product_id:int}", update_product, methods=["POST"]),
    Route("/admin/products/{product_id:int}/stock", set_stock, methods=["POST"],
          name="admin_stock"),
]


def _take_price(form: Any, body: dict[str, Any]) -> dict[str, str]:
    """Put the form's price into ``body`` as cents; the field errors, if it is not a price."""
    price = parse_price(form.get("price", ""))
    if price is None:
        return {"price": "Enter a price like 12.34"}
    body["price_cents"] = price
    return {}
