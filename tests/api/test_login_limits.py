"""Password guessing: failed log-ins are limited per account and per client address.

The counters live in the store's database (every backend) or in Redis (``cache_url``), so
every app instance shares them: the tests run two apps over the same storage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tierlake.app.main import create_app
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import RateLimitCounter

URL = "/api/v1/auth/login"
RIGHT = "a-decent-phrase 42"
WEB_TIER = ("127.0.0.1", 40000)  # a trusted proxy (the default: loopback)


def _settings(**overrides: Any) -> Settings:
    # A secret of its own per test: the limiter's keys are HMACs with it, so tests sharing the
    # session's Redis do not share counters.
    return Settings(secret_key=uuid.uuid4().hex, **overrides)


@contextmanager
def _apps(url: str, settings: Settings, count: int = 1,
          peer: tuple[str, int] = WEB_TIER) -> Iterator[list[TestClient]]:
    """``count`` app instances, each with its own engine, over the database at ``url``."""
    with ExitStack() as stack:
        clients = []
        for _ in range(count):
            db = Database(url)
            stack.callback(db.dispose)
            clients.append(stack.enter_context(TestClient(
                create_app(settings, db), raise_server_exceptions=False, client=peer)))
        yield clients


def _register(client: TestClient, email: str) -> None:
    r = client.post("/api/v1/auth/register", json={"email": email, "password": RIGHT,
                                                   "name": "Guessed"})
    assert r.status_code == 201, r.text


def _login(client: TestClient, email: str, password: str, shopper: str = "203.0.113.5"):  # type: ignore[no-untyped-def]
    return client.post(URL, json={"email": email, "password": password},
                       headers={"X-Forwarded-For": shopper})


def _assert_limited(r, window: int) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= window
    error = r.json()["error"]
    assert error["code"] == "too_many_attempts" and error["fields"] == []
    assert "Too many failed log-ins" in error["message"] and "try again" in error["message"]


def test_the_eleventh_wrong_password_is_refused_and_so_is_the_right_one(
        database_url: str) -> None:
    with _apps(database_url, _settings()) as [client]:
        _register(client, "victim@example.com")
        for _ in range(10):
            assert _login(client, "victim@example.com", "guess-123456").status_code == 401
        _assert_limited(_login(client, "victim@example.com", "guess-123456"), 900)
        limited = _login(client, "Victim@Example.com ", RIGHT)
        _assert_limited(limited, 900)
        assert "for this e-mail address" in limited.json()["error"]["message"]
        # An address without an account is limited alike, with the same answer.
        for _ in range(10):
            assert _login(client, "nobody@example.com", "guess-123456").status_code == 401
        unknown = _login(client, "nobody@example.com", "guess-123456")
        assert unknown.json() == limited.json()
        # Other accounts are not affected by this account's limit.
        _register(client, "bystander@example.com")
        assert _login(client, "bystander@example.com", RIGHT).status_code == 200


def test_successful_logins_do_not_count(database_url: str) -> None:
    with _apps(database_url, _settings()) as [client]:
        _register(client, "forgetful@example.com")
        for _ in range(9):
            assert _login(client, "forgetful@example.com", "wrong-guess-1").status_code == 401
        for _ in range(5):
            assert _login(client, "forgetful@example.com", RIGHT).status_code == 200
        assert _login(client, "forgetful@example.com", "wrong-guess-1").status_code == 401
        _assert_limited(_login(client, "forgetful@example.com", RIGHT), 900)


def test_one_address_guessing_across_accounts_is_limited(database_url: str) -> None:
    settings = _settings(auth={"login_failures_per_address": 5})
    with _apps(database_url, settings) as [client]:
        _register(client, "someone@example.com")
        for n in range(5):
            assert _login(client, f"spray-{n}@example.com", "password-123",
                          shopper="203.0.113.7").status_code == 401
        limited = _login(client, "someone@example.com", RIGHT, shopper="203.0.113.7")
        _assert_limited(limited, 900)
        assert "from your network address" in limited.json()["error"]["message"]
        # What a client wrote itself left of the address our proxy saw is not believed.
        spoofed = _login(client, "someone@example.com", RIGHT,
                         shopper="198.51.100.1, 203.0.113.7")
        assert spoofed.status_code == 429
        # Another shopper behind the same web tier is not affected.
        other = _login(client, "someone@example.com", RIGHT, shopper="203.0.113.8")
        assert other.status_code == 200


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(database_url: str) -> None:
    settings = _settings(auth={"login_failures_per_address": 3})
    with _apps(database_url, settings, peer=("198.51.100.20", 5000)) as [client]:
        _register(client, "direct@example.com")
        for n in range(3):  # a different made-up address each time: all counted under the peer
            assert _login(client, f"x{n}@example.com", "password-123",
                          shopper=f"192.0.2.{n}").status_code == 401
        _assert_limited(_login(client, "direct@example.com", RIGHT, shopper="192.0.2.99"), 900)


def test_two_app_instances_share_the_counters_in_the_database(database_url: str) -> None:
    with _apps(database_url, _settings(), count=2) as [first, second]:
        _register(first, "shared@example.com")
        for client in (first, second) * 5:
            assert _login(client, "shared@example.com", "wrong-guess-1").status_code == 401
        _assert_limited(_login(second, "shared@example.com", RIGHT), 900)
        _assert_limited(_login(first, "shared@example.com", RIGHT), 900)
    assert _counters(database_url) >= 2  # in the database, not in one process's memory


def test_two_app_instances_share_the_counters_in_redis(database_url: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(cache_url=redis_server.url)
    with _apps(database_url, settings, count=2) as [first, second]:
        _register(first, "cached@example.com")
        for client in (first, second) * 5:
            assert _login(client, "cached@example.com", "wrong-guess-1").status_code == 401
        _assert_limited(_login(second, "cached@example.com", RIGHT), 900)
        _assert_limited(_login(first, "cached@example.com", RIGHT), 900)
    assert _counters(database_url) == 0  # the counters went to Redis


@pytest.mark.parametrize("storage", ["database", "redis"])
def test_the_limit_ends_with_its_window(database_url: str, storage: str,
                                        request: pytest.FixtureRequest) -> None:
    cache = request.getfixturevalue("redis_server").url if storage == "redis" else ""
    # One failure allowed per window: the limited attempt follows the failure at once (a
    # password check is all that separates them). The window opens when the failure is
    # counted, before its argon2 check, which took 3.2 s on a loaded machine (load 10), so
    # a 3 s window could end before the next attempt: 6 s leaves room.
    window = 6
    settings = _settings(auth={"login_window_seconds": window, "login_failures_per_account": 1},
                         cache_url=cache)
    with _apps(database_url, settings) as [client]:
        _register(client, "patient@example.com")
        assert _login(client, "patient@example.com", "wrong-guess-1").status_code == 401
        limited = _login(client, "patient@example.com", RIGHT)
        _assert_limited(limited, window)
        deadline = time.monotonic() + window + 10
        while (r := _login(client, "patient@example.com", RIGHT)).status_code == 429:
            assert time.monotonic() < deadline, "the limit did not end with its window"
            time.sleep(0.2)
        assert r.status_code == 200, r.text


def test_parallel_guesses_cannot_slip_past_the_limit(database_url: str) -> None:
    with _apps(database_url, _settings(), count=2) as clients:
        _register(clients[0], "raced@example.com")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(
                lambda n: _login(clients[n % 2], "raced@example.com", "wrong-guess-1").status_code,
                range(24)))
    assert sorted(statuses) == [401] * 10 + [429] * 14


def test_an_unreachable_counter_store_is_a_503_not_a_500(database_url: str) -> None:
    settings = _settings(cache_url="redis://127.0.0.1:9/0")  # nothing listens on port 9
    with _apps(database_url, settings) as [client]:
        r = _login(client, "anyone@example.com", "wrong-guess-1")
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] and r.json()["error"]["code"] == "service_unavailable"


def _counters(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as s:
            return int(s.scalar(select(func.count()).select_from(RateLimitCounter)) or 0)
    finally:
        db.dispose()
