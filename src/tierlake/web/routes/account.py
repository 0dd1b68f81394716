"""Accounts: log in, register, log out, account page, delete account."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierlake.errors import AppTierUnavailableError
from tierlake.web.client import ApiError
from tierlake.web.common import (
    api,
    flash,
    form_data,
    redirect,
    require_login,
    safe_next,
    web,
)
from tierlake.web.render import render
from tierlake.web.session import Auth


async def _start_session(request: Request, session: dict[str, Any]) -> None:
    customer = session["customer"]
    auth = Auth(token=session["token"], customer_id=int(customer["id"]), name=customer["name"],
                is_admin=bool(customer.get("is_admin")), country=customer.get("country") or "")
    expires = None
    with contextlib.suppress(ValueError):
        expires = datetime.fromisoformat(str(session["expires_at"]).replace("Z", "+00:00"))
    web(request).login(auth, expires)
    try:
        cart = await api(request).get("/cart", token=auth.token)
        web(request).set_cart_count(int(cart["item_count"]))
    except (ApiError, AppTierUnavailableError):
        web(request).set_cart_count(None)


async def _password(request: Request) -> str:
    """The password as typed: spaces are part of it (form_data trims every other field)."""
    value = (await request.form()).get("password", "")
    return value if isinstance(value, str) else ""


async def login_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"), "/")
    if web(request).auth is not None:
        return redirect(next_path)
    return render(request, "login.html", {"next": next_path})


def _forwarded_for(request: Request) -> str:
    """``X-Forwarded-For`` for the app tier: what reached us, plus the peer we saw (the app
    tier believes it from trusted proxies only, see app/ratelimit/address.py)."""
    peer = request.client.host if request.client else "unknown"
    before = request.headers.get("x-forwarded-for", "").strip()
    return f"{before}, {peer}" if before else peer


async def login_submit(request: Request) -> Response:
    form = await form_data(request)
    next_path = safe_next(form.get("next"), "/")
    email = form.get("email", "")
    try:
        session = await api(request).post(
            "/auth/login", json={"email": email, "password": await _password(request)},
            headers={"X-Forwarded-For": _forwarded_for(request)},
        )
    except ApiError as exc:
        if exc.status not in (401, 422, 429):
            raise
        errors = exc.field_errors()
        message = {401: "Wrong email or password. Please try again.",
                   429: exc.message}.get(exc.status, "Please check the highlighted fields.")
        return render(request, "login.html", {
            "next": next_path, "form": {"email": email}, "errors": errors, "form_error": message,
        }, status=exc.status)
    await _start_session(request, session)
    flash(request, f"Welcome back, {session['customer']['name']}!")
    return redirect(next_path)


async def register_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"), "/")
    if web(request).auth is not None:
        return redirect(next_path)
    return render(request, "register.html", {"next": next_path})


async def register_submit(request: Request) -> Response:
    form = await form_data(request)
    next_path = safe_next(form.get("next"), "/")
    body: dict[str, Any] = {
        "email": form.get("email", ""), "password": await _password(request),
        "name": form.get("name", ""),
    }
    if form.get("country"):
        body["country"] = form["country"].upper()
    try:
        session = await api(request).post("/auth/register", json=body)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        errors = exc.field_errors()
        if exc.code == "email_taken":
            errors["email"] = "An account with this email already exists. Log in instead?"
        elif "password" in errors and exc.code != "weak_password":
            errors["password"] = "Use at least 8 characters (and at most 128)."
        kept = {k: v for k, v in form.items() if k != "password"}
        return render(request, "register.html", {
            "next": next_path, "form": kept, "errors": errors,
            "form_error": "Please correct the highlighted fields.",
        }, status=exc.status)
    await _start_session(request, session)
    flash(request, f"Welcome to tierlake, {session['customer']['name']}! Your account is ready.")
    return redirect(next_path)


async def logout(request: Request) -> Response:
    auth = web(request).auth
    if auth is not None:
        # the cookie goes anyway; an API session we could not end expires on its own
        with contextlib.suppress(ApiError, AppTierUnavailableError):
            await api(request).post("/auth/logout", token=auth.token)
    web(request).logout()
    flash(request, "You have been logged out.", "info")
    return redirect("/")


async def account_page(request: Request) -> Response:
    auth = require_login(request)
    me = await api(request).get("/me", token=auth.token)
    return render(request, "account.html", {"customer": me})


async def delete_account(request: Request) -> Response:
    auth = require_login(request, "/account")
    try:
        await api(request).delete("/me", token=auth.token,
                                  json={"password": await _password(request)})
    except ApiError as exc:
        if not (exc.code == "invalid_credentials" or exc.status == 422):
            raise
        me = await api(request).get("/me", token=auth.token)
        return render(request, "account.html", {
            "customer": me,
            "errors": {"password": "That password is not right; your account was not deleted."
                       if exc.status != 422 else "Enter your password to confirm."},
        }, status=exc.status)
    web(request).logout()
    flash(request, "Your account has been deleted. Thank you for shopping with us.", "info")
    return redirect("/")


routes = [
    Route("/login", login_page, methods=["GET"], name="login"),
    Route("/login", login_submit, methods=["POST"]),
    Route("/register", register_page, methods=["GET"], name="register"),
    Route("/register", register_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/account", account_page, methods=["GET"], name="account"),
    Route("/account/delete", delete_account, methods=["POST"], name="account_delete"),
]
