"""Logging in to the BI tier: signed session cookie, CSRF tokens, login limit, who is asking.

* ``bi_session``: the user's e-mail signed with ``secret_key`` (itsdangerous, its own salt),
  valid ``bi.session_hours``. Each request looks the user up again, so a removed user or a
  changed role or rule takes effect on their next click. HttpOnly, SameSite=Lax, Path=/bi.
* ``bi_csrf``: a random value; every form carries it signed (``csrf_token``) and a POST
  is accepted only when the two match (the double-submit pattern, stateless across
  instances). JSON POSTs need ``Content-Type: application/json``, which a foreign page
  cannot send without a CORS preflight this tier never grants.
* Failed log-ins are counted per account and per client address with the `limits`
  library's fixed windows, as the store's app tier does (``auth.login_failures_*``): in
  Redis when ``cache_url`` is set (shared by every BI instance), else in the process.

:func:`current_principal` is the dependency every page and API route takes: it raises
:class:`LoginRequired`, which the app answers with a redirect to the login page for pages
and a 401 JSON body for ``/bi/api/...``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from tierlake.bi.model import Principal
from tierlake.bi.users import UserStore
from tierlake.config import Settings

log = structlog.get_logger(__name__)
SESSION_COOKIE = "bi_session"
CSRF_COOKIE = "bi_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/bi"


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    pass


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed log-ins. Wait {retry_after} s and try again.")
        self.retry_after = retry_after


class Sessions:
    """Signs and reads the session and CSRF cookies."""

    def __init__(self, secret: str, session_hours: int) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="tierlake.bi.session")
        self._csrf = URLSafeTimedSerializer(secret, salt="tierlake.bi.csrf")
        self.max_age = session_hours * 3600

    def session_value(self, email: str) -> str:
        return self._session.dumps({"e": email})

    def email_from(self, raw: str | None) -> str | None:
        if not raw or len(raw) > 1000:
            return None
        try:
            data = self._session.loads(raw, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        email = data.get("e") if isinstance(data, dict) else None
        return email if isinstance(email, str) else None

    def csrf_token(self, cookie_value: str) -> str:
        return self._csrf.dumps(cookie_value)

    def csrf_valid(self, token: object, cookie_value: str | None) -> bool:
        if not isinstance(token, str) or not cookie_value or len(token) > 500:
            return False
        try:
            return bool(hmac.compare_digest(
                str(self._csrf.loads(token, max_age=self.max_age)), cookie_value))
        except (BadSignature, ValueError, TypeError):
            return False


def csrf_cookie_value(request: Request) -> str:
    """The browser's CSRF cookie, or a new one the response must set (``request.state``)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if not (16 <= len(value) <= 64 and value.isalnum()):
        value = getattr(request.state, "new_csrf", None) or secrets.token_hex(16)
        request.state.new_csrf = value
    return value


class LoginLimiter:
    """Failed log-ins per account and per address, fixed windows (see the module doc)."""

    def __init__(self, storage: Storage, *, per_account: int, per_address: int,
                 window_seconds: int, key_secret: bytes) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._items = (RateLimitItemPerSecond(per_account, window_seconds, "bi-login-account"),
                       RateLimitItemPerSecond(per_address, window_seconds, "bi-login-address"))
        self._secret = key_secret

    def _keys(self, email: str, address: str) -> list[str]:
        return [hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:40]
                for kind, value in (("account", email.strip().lower()), ("address", address))]

    def check(self, email: str, address: str) -> None:
        """Raises TooManyAttempts while either window is spent."""
        for item, key in zip(self._items, self._keys(email, address), strict=True):
            if not self._limiter.test(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                raise TooManyAttempts(max(1, math.ceil(reset - time.time())))

    def failed(self, email: str, address: str) -> None:
        for item, key in zip(self._items, self._keys(email, address), strict=True):
            self._limiter.hit(item, key)


def login_limiter_for(settings: Settings) -> LoginLimiter:
    storage: Storage = (RedisStorage(settings.cache_url, wrap_exceptions=True)
                        if settings.cache_url else MemoryStorage())
    return LoginLimiter(storage, per_account=settings.auth.login_failures_per_account,
                        per_address=settings.auth.login_failures_per_address,
                        window_seconds=settings.auth.login_window_seconds,
                        key_secret=settings.secret_key.get_secret_value().encode())


@contextmanager
def counted_login(limiter: LoginLimiter, email: str, address: str) -> Iterator[list[bool]]:
    """``with counted_login(...) as failed: ...; failed.append(True)`` counts a failure."""
    limiter.check(email, address)
    failed: list[bool] = []
    yield failed
    if failed:
        limiter.failed(email, address)


def _next_path(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def current_principal(request: Request) -> Principal:
    """Who is asking (a FastAPI dependency); LoginRequired when nobody is logged in."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    sessions: Sessions = request.app.state.sessions
    users: UserStore = request.app.state.users
    email = sessions.email_from(request.cookies.get(SESSION_COOKIE))
    principal = users.principal(email) if email else None
    if principal is None:
        raise LoginRequired(_next_path(request))
    request.state.principal = principal
    return principal


def admin_principal(request: Request) -> Principal:
    """Like :func:`current_principal`, for admin-only routes (403 for analysts)."""
    principal = current_principal(request)
    if not principal.is_admin:
        raise Forbidden("This page is for admins.")
    return principal
