"""Cart, checkout and order history."""

from __future__ import annotations

import asyncio
import re
import uuid
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
    login_url,
    page_window,
    redirect,
    require_login,
    safe_next,
    track,
    web,
)
from tierlake.web.messages import SHIPPING_FORM
from tierlake.web.render import render

SHIPPING_FIELDS = ("name", "address", "city", "postcode", "country")
# Pauses between tries while a twin submit is in flight: about 5 s in all.
IN_FLIGHT_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5, 2.0)
_KEY = re.compile(r"^[A-Za-z0-9-]{8,100}$")


def _quantity(value: Any, default: int = 1) -> int:
    return int_param(value, default, lo=0, hi=100)


async def _cart(request: Request, token: str) -> dict[str, Any]:
    cart = await api(request).get("/cart", token=token)
    web(request).set_cart_count(int(cart["item_count"]))
    return cart


async def cart_page(request: Request) -> Response:
    auth = require_login(request)
    cart = await _cart(request, auth.token)
    return render(request, "cart.html", {"cart": cart})


async def add_to_cart(request: Request) -> Response:
    form = await form_data(request)
    back = safe_next(form.get("return_to"), "/")
    auth = web(request).auth
    if auth is None:
        flash(request, "Please log in to add items to your cart.", "info")
        return redirect(login_url(back))
    product_id = int_param(form.get("product_id"), 0, lo=0, hi=2**62)
    wanted = max(1, _quantity(form.get("quantity")))
    product = await api(request).get(f"/products/{product_id}")
    back = f"/p/{product['slug']}"
    cart = await api(request).get("/cart", token=auth.token)
    have = next((i["quantity"] for i in cart["items"] if i["product_id"] == product_id), 0)
    quantity = min(100, have + wanted)
    try:
        cart = await api(request).put(f"/cart/items/{product_id}", token=auth.token,
                                      json={"quantity": quantity})
    except ApiError as exc:
        if exc.status not in (404, 409, 422):
            raise
        flash(request, exc.message if exc.status != 422 else
              "You can have at most 100 of one product in your cart.", "error")
        return redirect(back)
    web(request).set_cart_count(int(cart["item_count"]))
    track(request, "add_to_cart", product_id=product_id, category=product["category"]["slug"])
    flash(request, f"Added {product['name']} to your cart.")
    return redirect("/cart")


async def update_item(request: Request) -> Response:
    auth = require_login(request, "/cart")
    product_id = request.path_params["product_id"]
    form = await form_data(request)
    quantity = _quantity(form.get("quantity"), default=-1)
    if quantity < 0:
        flash(request, "Enter a quantity between 0 and 100.", "error")
        return redirect("/cart")
    before = await api(request).get("/cart", token=auth.token)
    had = next((i for i in before["items"] if i["product_id"] == product_id), None)
    try:
        cart = await api(request).put(f"/cart/items/{product_id}", token=auth.token,
                                      json={"quantity": quantity})
    except ApiError as exc:
        if exc.status not in (404, 409, 422):
            raise
        flash(request, exc.message, "error")
        return redirect("/cart")
    web(request).set_cart_count(int(cart["item_count"]))
    old = had["quantity"] if had else 0
    if quantity > old:
        track(request, "add_to_cart", product_id=product_id)
        flash(request, "Your cart has been updated.")
    elif quantity < old:
        track(request, "remove_from_cart", product_id=product_id)
        flash(request, f"Removed {had['name']} from your cart." if quantity == 0 and had
              else "Your cart has been updated.")
    return redirect("/cart")


async def remove_item(request: Request) -> Response:
    auth = require_login(request, "/cart")
    product_id = request.path_params["product_id"]
    before = await api(request).get("/cart", token=auth.token)
    had = next((i for i in before["items"] if i["product_id"] == product_id), None)
    try:
        cart = await api(request).delete(f"/cart/items/{product_id}", token=auth.token)
    except ApiError as exc:
        if exc.status == 409:  # a checkout holds the cart: nothing was removed
            flash(request, exc.message, "error")
            return redirect("/cart")
        if exc.status != 404:
            raise
        cart = await api(request).get("/cart", token=auth.token)
    web(request).set_cart_count(int(cart["item_count"]))
    if had:
        track(request, "remove_from_cart", product_id=product_id)
        flash(request, f"Removed {had['name']} from your cart.")
    return redirect("/cart")


def _checkout_context(cart: dict[str, Any], form: dict[str, str], **extra: Any) -> dict:
    return {"cart": cart, "form": form, "idempotency_key": uuid.uuid4().hex, **extra}


async def checkout_page(request: Request) -> Response:
    auth = require_login(request)
    cart = await _cart(request, auth.token)
    if not cart["items"]:
        flash(request, "Your cart is empty - add something before checking out.", "info")
        return redirect("/cart")
    track(request, "checkout")
    form = {"name": auth.name, "country": auth.country or "US"}
    return render(request, "checkout.html", _checkout_context(cart, form))


async def checkout_submit(request: Request) -> Response:
    auth = require_login(request, "/checkout")
    form = await form_data(request)
    key = form.get("idempotency_key", "")
    shipping = {f: form.get(f, "") for f in SHIPPING_FIELDS}
    shipping["country"] = shipping["country"].upper()
    if not _KEY.match(key):
        flash(request, "Your checkout form expired. Please check your details and try again.",
              "error")
        return redirect("/checkout")
    try:
        status, order = await _place_order(request, auth.token, key, shipping)
    except ApiError as exc:
        if exc.code == "request_in_progress":  # still placing it after our wait
            flash(request, "Your order is still being placed; it will appear here in a moment.",
                  "info")
            return redirect("/orders")
        if exc.code == "idempotency_key_reused":  # a stale form for a cart that changed
            flash(request, "Your cart changed since this checkout page was opened. Please check "
                  "your order and place it again.", "error")
            return redirect("/checkout")
        if exc.status == 409 or exc.code in ("out_of_stock", "cart_empty"):
            flash(request, exc.message, "error")
            return redirect("/cart")
        if exc.status not in (400, 422):
            raise
        cart = await _cart(request, auth.token)
        return render(request, "checkout.html", _checkout_context(
            cart, shipping, errors=exc.field_errors(SHIPPING_FORM),
            form_error="Please correct the highlighted fields.",
        ), status=422)
    if status == 201:  # a replay (200) is the same purchase, not a second one
        web(request).set_cart_count(0)
        track(request, "purchase", order_id=order["id"])
    else:
        await _cart(request, auth.token)
    return redirect(f"/orders/{order['id']}?placed=1")


async def _place_order(request: Request, token: str, key: str,
                       shipping: dict[str, str]) -> tuple[int, Any]:
    """POST /orders; while a twin of this submit (a double click) is still being placed,
    wait for it (a few seconds at most) and answer with its order."""
    async def post() -> tuple[int, Any]:
        return await api(request).call("POST", "/orders", token=token,
                                       json={"shipping": shipping},
                                       headers={"Idempotency-Key": key})

    for delay in IN_FLIGHT_WAITS:
        try:
            return await post()
        except ApiError as exc:
            if exc.code != "request_in_progress":
                raise
        await asyncio.sleep(delay)
    return await post()


async def orders_page(request: Request) -> Response:
    auth = require_login(request)
    page = int_param(request.query_params.get("page"), 1)
    result = await api(request).get("/orders", token=auth.token, params={"page": page})
    return render(request, "orders.html", {
        "result": result, "page_links": page_window(result["page"], result["pages"]),
    })


async def order_page(request: Request) -> Response:
    auth = require_login(request)
    order = await api(request).get(f"/orders/{request.path_params['order_id']}",
                                   token=auth.token)
    return render(request, "order.html", {
        "order": order, "placed": request.query_params.get("placed") == "1",
    })


routes = [
    Route("/cart", cart_page, methods=["GET"], name="cart"),
    Route("/cart/add", add_to_cart, methods=["POST"], name="cart_add"),
    Route("/cart/items/{product_id:int}", update_item, methods=["POST"], name="cart_update"),
    Route("/cart/items/{product_id:int}/remove", remove_item, methods=["POST"],
          name="cart_remove"),
    Route("/checkout", checkout_page, methods=["GET"], name="checkout"),
    Route("/checkout", checkout_submit, methods=["POST"]),
    Route("/orders", orders_page, methods=["GET"], name="orders"),
    Route("/orders/{order_id:int}", order_page, methods=["GET"], name="order"),
]
