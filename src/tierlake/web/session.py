"""The web tier's cookies: visitor, clickstream session, login, flash, cart count.

The web tier keeps no server-side state, so everything it remembers about a
browser lives in cookies signed with ``settings.secret_key`` (any instance can
read what another wrote). All cookies are HttpOnly and SameSite=Lax.

* ``tl_visitor`` - a random visitor id, kept for two years.
* ``tl_session`` - the clickstream session id; re-issued on every page so it
  expires 30 minutes after the visitor's last request (a rolling expiry).
* ``tl_auth`` - the logged-in customer's API bearer token (plus name, id and
  admin flag for the page header); lives as long as the API session.
* ``tl_flash`` - a one-shot message shown on the next page.
* ``tl_cart`` - the number of items in the cart, for the header badge only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

VISITOR_COOKIE = "tl_visitor"
SESSION_COOKIE = "tl_session"
AUTH_COOKIE = "tl_auth"
FLASH_COOKIE = "tl_flash"
CART_COOKIE = "tl_cart"

VISITOR_MAX_AGE = 2 * 365 * 24 * 3600
SESSION_MAX_AGE = 30 * 60
FLASH_MAX_AGE = 5 * 60
AUTH_FALLBACK_MAX_AGE = 72 * 3600


@dataclass(frozen=True)
class Auth:
    """The logged-in customer as remembered by the auth cookie."""

    token: str
    customer_id: int
    name: str
    is_admin: bool = False
    country: str = ""


@dataclass
class WebContext:
    """Everything one request knows about its browser, and the cookie changes to send."""

    visitor_id: str
    session_id: str
    auth: Auth | None = None
    cart_count: int | None = None
    flash_in: dict[str, str] | None = None
    # changes the response should carry
    flash_out: dict[str, str] | None = None
    flash_consumed: bool = False
    new_auth: tuple[Auth, int] | None = None
    clear_auth: bool = False
    cart_changed: bool = False
    # clickstream: fields for this request's page_view and extra action events
    page: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def login(self, auth: Auth, expires_at: datetime | None) -> None:
        max_age = AUTH_FALLBACK_MAX_AGE
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            max_age = max(60, int((expires_at - datetime.now(UTC)).total_seconds()))
        self.auth = auth
        self.new_auth = (auth, max_age)
        self.clear_auth = False

    def logout(self) -> None:
        self.auth = None
        self.new_auth = None
        self.clear_auth = True
        self.set_cart_count(None)

    def set_cart_count(self, count: int | None) -> None:
        if count != self.cart_count:
            self.cart_count = count
            self.cart_changed = True

    def flash(self, message: str, kind: str = "success") -> None:
        self.flash_out = {"message": message, "kind": kind}

    def take_flash(self) -> dict[str, str] | None:
        """The message to show on the page being rendered (at most once)."""
        if self.flash_out is not None:
            msg, self.flash_out = self.flash_out, None
            return msg
        if self.flash_in is not None and not self.flash_consumed:
            self.flash_consumed = True
            return self.flash_in
        return None


class CookieCodec:
    """Signs and checks cookie values; each cookie name has its own salt."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def _serializer(self, name: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret, salt=f"tierlake.web.cookie.{name}")

    def dumps(self, name: str, value: Any) -> str:
        return self._serializer(name).dumps(value)

    def loads(self, name: str, raw: str | None, max_age: int) -> Any:
        if not raw:
            return None
        try:
            return self._serializer(name).loads(raw, max_age=max_age)
        except (BadSignature, ValueError, TypeError):
            return None


def parse_cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed Cookie header means no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


def _valid_id(value: Any) -> str | None:
    if isinstance(value, str) and 8 <= len(value) <= 64 and value.isalnum():
        return value
    return None


def context_from_cookies(codec: CookieCodec, cookies: dict[str, str]) -> WebContext:
    visitor = _valid_id(codec.loads(VISITOR_COOKIE, cookies.get(VISITOR_COOKIE), VISITOR_MAX_AGE))
    session = _valid_id(codec.loads(SESSION_COOKIE, cookies.get(SESSION_COOKIE), SESSION_MAX_AGE))
    ctx = WebContext(visitor_id=visitor or uuid.uuid4().hex, session_id=session or uuid.uuid4().hex)
    raw_auth = codec.loads(AUTH_COOKIE, cookies.get(AUTH_COOKIE), 366 * 24 * 3600)
    if isinstance(raw_auth, dict) and isinstance(raw_auth.get("t"), str):
        try:
            ctx.auth = Auth(
                token=raw_auth["t"],
                customer_id=int(raw_auth.get("c", 0)),
                name=str(raw_auth.get("n", "")),
                is_admin=bool(raw_auth.get("a", False)),
                country=str(raw_auth.get("k", "")),
            )
        except (TypeError, ValueError):
            ctx.auth = None
    count = cookies.get(CART_COOKIE, "")
    if ctx.auth is not None and count.isascii() and count.isdigit() and len(count) < 6:
        ctx.cart_count = int(count)
    flash = codec.loads(FLASH_COOKIE, cookies.get(FLASH_COOKIE), FLASH_MAX_AGE)
    if isinstance(flash, dict) and isinstance(flash.get("message"), str):
        ctx.flash_in = {"message": flash["message"], "kind": str(flash.get("kind", "info"))}
    return ctx


def _cookie(name: str, value: str, max_age: int, secure: bool) -> str:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if max_age == 0:
        parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def response_cookies(
    codec: CookieCodec, ctx: WebContext, cookies: dict[str, str], *, secure: bool
) -> list[str]:
    """The Set-Cookie header values this response must carry."""
    out = [
        _cookie(VISITOR_COOKIE, codec.dumps(VISITOR_COOKIE, ctx.visitor_id), VISITOR_MAX_AGE,
                secure),
        # re-issued on every page: the 30 minutes count from the latest request
        _cookie(SESSION_COOKIE, codec.dumps(SESSION_COOKIE, ctx.session_id), SESSION_MAX_AGE,
                secure),
    ]
    if ctx.new_auth is not None:
        auth, max_age = ctx.new_auth
        value = {"t": auth.token, "c": auth.customer_id, "n": auth.name, "a": auth.is_admin,
                 "k": auth.country}
        out.append(_cookie(AUTH_COOKIE, codec.dumps(AUTH_COOKIE, value), max_age, secure))
    elif ctx.clear_auth and AUTH_COOKIE in cookies:
        out.append(_cookie(AUTH_COOKIE, "", 0, secure))
    if ctx.flash_out is not None:
        out.append(_cookie(FLASH_COOKIE, codec.dumps(FLASH_COOKIE, ctx.flash_out), FLASH_MAX_AGE,
                           secure))
    elif FLASH_COOKIE in cookies and (ctx.flash_consumed or ctx.flash_in is None):
        out.append(_cookie(FLASH_COOKIE, "", 0, secure))
    if ctx.cart_changed:
        if ctx.cart_count is None:
            if CART_COOKIE in cookies:
                out.append(_cookie(CART_COOKIE, "", 0, secure))
        else:
            out.append(_cookie(CART_COOKIE, str(ctx.cart_count), VISITOR_MAX_AGE, secure))
    return out
