"""Password guessing: how many log-ins may fail per account and per client address.

Fixed windows (the `limits` library's fixed-window strategy): a window opens with the first
failure of a key and lasts ``auth.login_window_seconds``; within it at most
``auth.login_failures_per_account`` failures for one e-mail address and
``auth.login_failures_per_address`` from one client address are allowed, then every attempt,
even with the right password, gets a 429 with ``Retry-After`` until the window ends. A fixed
window gives an exact ``Retry-After`` and the whole allowance back at once; started by the
first failure (not by the clock), at most twice the allowance fits across a window's end.

Every attempt is counted before the password is checked, so parallel guesses cannot all slip
through before the first failure is recorded; an attempt that does not fail on credentials
(a success, or an error of ours) is taken back, so successful log-ins do not count.

A refused attempt looks the account up nowhere and hashes nothing, so the 429 takes the same
time, and says the same, for an e-mail address with or without an account. Keys are HMACs of
the address (no personal data in the counters).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from tierlake.app.errors import ServiceUnavailableError, TooManyRequestsError, UnauthorizedError
from tierlake.app.ratelimit.sql_storage import SQLStorage
from tierlake.config import Settings
from tierlake.data.db import Database

log = structlog.get_logger(__name__)
REDIS_TIMEOUT_SECONDS = 2.0


def _wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


class LoginLimiter:
    """Counts failed log-ins in ``storage`` (shared by every app instance)."""

    def __init__(self, storage: Storage, *, per_account: int, per_address: int,
                 window_seconds: int, key_secret: bytes) -> None:
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._account = RateLimitItemPerSecond(per_account, window_seconds, "login-account")
        self._address = RateLimitItemPerSecond(per_address, window_seconds, "login-address")
        self._secret = key_secret

    def _key(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:40]

    @contextmanager
    def attempt(self, email: str, address: str) -> Iterator[None]:
        """Count one log-in; raises TooManyRequestsError when a limit is spent, and keeps
        the count only if the body raises UnauthorizedError (wrong e-mail or password)."""
        hits: list[tuple[RateLimitItem, str]] = [
            (self._account, self._key("account", email.strip().lower())),
            (self._address, self._key("address", address)),
        ]
        try:
            refused = [(item, key) for item, key in hits if not self._limiter.hit(item, key)]
            waits = [(self._limiter.get_window_stats(item, key).reset_time - time.time(), item)
                     for item, key in refused]
        except StorageError as exc:
            log.error("login_limiter.unavailable", error=str(exc)[:300])
            raise ServiceUnavailableError(
                "Logging in is unavailable for a moment (the attempt counter cannot be "
                "reached); try again shortly.") from exc
        if waits:
            seconds, item = max(waits, key=lambda w: w[0])
            retry = max(1, math.ceil(seconds))
            whose = ("for this e-mail address" if item is self._account
                     else "from your network address")
            raise TooManyRequestsError(
                f"Too many failed log-ins {whose}. For your security, wait {_wait(retry)} "
                "and try again.", retry_after=retry, code="too_many_attempts")
        try:
            yield
        except UnauthorizedError:
            raise
        except BaseException:
            self._take_back(hits)
            raise
        self._take_back(hits)

    def _take_back(self, hits: list[tuple[RateLimitItem, str]]) -> None:
        try:
            for item, key in hits:
                self._limiter.hit(item, key, cost=-1)
        except StorageError as exc:  # the log-in itself went through; the count stays
            log.warning("login_limiter.take_back_failed", error=str(exc)[:300])


def login_limiter_for(settings: Settings, db: Database) -> LoginLimiter:
    """Counters in the cache when ``cache_url`` is set, else in the store's database."""
    storage: Storage
    if settings.cache_url:
        storage = RedisStorage(settings.cache_url, wrap_exceptions=True,
                               socket_timeout=REDIS_TIMEOUT_SECONDS,
                               socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    else:
        storage = SQLStorage(db, wrap_exceptions=True)
    return LoginLimiter(storage, per_account=settings.auth.login_failures_per_account,
                        per_address=settings.auth.login_failures_per_address,
                        window_seconds=settings.auth.login_window_seconds,
                        key_secret=settings.secret_key.get_secret_value().encode())


def get_login_limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter
