"""Logging in to the BI tier over HTTP: the first admin, forms with CSRF tokens, the signed
session, the login limiter, logout, and the store's shoppers kept out.

The app runs in-process with its real engine over an empty lake (logging in reads no data)
and its own SQLite database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer

from tierlake.bi.app import create_app
from tierlake.bi.auth import SESSION_COOKIE
from tierlake.bi.users import UserStore
from tierlake.config import Settings

ADMIN = ("first-admin@bi.example", "first-admin-pass-1")
FAILURES = 3


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    settings = Settings(
        data_dir=tmp_path, admin_email=ADMIN[0], admin_password=ADMIN[1],  # type: ignore[arg-type]
        auth={"login_failures_per_account": FAILURES, "login_window_seconds": 600},  # type: ignore[arg-type]
    )
    application = create_app(settings)
    with TestClient(application, base_url="http://127.0.0.1"):
        yield application


def _client(app: Any) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the form has no CSRF token"
    return found.group(1)


def _form_login(client: TestClient, email: str, password: str, next_path: str = "/bi/"
                ) -> Any:
    form = client.get("/bi/login", params={"next": next_path})
    return client.post("/bi/login", data={"email": email, "password": password,
                                          "csrf_token": _token(form.text), "next": next_path},
                       follow_redirects=False)


def test_the_first_admin_logs_in_through_the_form_and_back_to_the_page(app: Any) -> None:
    users: UserStore = app.state.users
    assert [(u.email, u.role) for u in users.list_users()] == [(ADMIN[0], "admin")]
    client = _client(app)
    asked = client.get("/bi/dashboards/sales?start=2026-11-01", follow_redirects=False)
    assert asked.status_code == 303
    next_path = "/bi/dashboards/sales?start=2026-11-01"
    assert asked.headers["location"] == (
        "/bi/login?next=%2Fbi%2Fdashboards%2Fsales%3Fstart%3D2026-11-01")
    answer = _form_login(client, *ADMIN, next_path=next_path)
    assert answer.status_code == 303 and answer.headers["location"] == next_path
    cookie = answer.headers["set-cookie"]
    assert "bi_session=" in cookie and "HttpOnly" in cookie and "Path=/bi" in cookie
    assert "samesite=lax" in cookie.lower()
    me = client.get("/bi/api/me").json()
    assert me["email"] == ADMIN[0] and me["role"] == "admin"
    home = client.get("/bi/")
    assert home.status_code == 200 and 'data-testid="nav-users"' in home.text


def test_forms_without_a_valid_csrf_token_are_refused(app: Any) -> None:
    client = _client(app)
    client.get("/bi/login")  # the CSRF cookie
    forged = client.post("/bi/login", data={"email": ADMIN[0], "password": ADMIN[1],
                                            "csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403 and "expired" in forged.text
    assert SESSION_COOKIE not in client.cookies
    # A token from another browser (another CSRF cookie) does not fit either.
    other = _client(app)
    stolen = _token(other.get("/bi/login").text)
    answer = client.post("/bi/login", data={"email": ADMIN[0], "password": ADMIN[1],
                                            "csrf_token": stolen}, follow_redirects=False)
    assert answer.status_code == 403
    # The JSON login takes JSON only (a foreign page cannot send it without CORS).
    form_encoded = client.post("/bi/api/session", data={"email": ADMIN[0],
                                                        "password": ADMIN[1]})
    assert form_encoded.status_code == 422


def test_wrong_passwords_are_limited_then_refused_even_when_right(app: Any) -> None:
    client = _client(app)
    for _ in range(FAILURES):
        wrong = _form_login(client, ADMIN[0], "not-the-password")
        assert wrong.status_code == 401 and "Wrong e-mail or password." in wrong.text
    limited = _form_login(client, ADMIN[0], ADMIN[1])
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "Too many failed log-ins" in limited.text
    api = client.post("/bi/api/session", json={"email": ADMIN[0], "password": ADMIN[1]})
    assert api.status_code == 429 and api.json()["error"]["code"] == "too_many_attempts"
    # Another account is not locked by these failures.
    app.state.users.add_user("other@bi.example", "other-password-1", role="analyst")
    ok = client.post("/bi/api/session", json={"email": "other@bi.example",
                                              "password": "other-password-1"})
    assert ok.status_code == 200


def test_the_session_is_signed_and_ends_with_the_user_or_logout(app: Any) -> None:
    users: UserStore = app.state.users
    users.add_user("temp@bi.example", "temporary-pass-1", role="analyst")
    client = _client(app)
    assert client.post("/bi/api/session", json={"email": "temp@bi.example",
                                                "password": "temporary-pass-1"}).status_code == 200
    assert client.get("/bi/api/me").status_code == 200
    # A cookie naming the admin, signed with another key, is nobody.
    forged = _client(app)
    value = URLSafeTimedSerializer("a-guessed-key", salt="tierlake.bi.session").dumps(
        {"e": ADMIN[0]})
    forged.cookies.set(SESSION_COOKIE, value, path="/bi")
    assert forged.get("/bi/api/me").status_code == 401
    genuine = _client(app)
    genuine.cookies.set(SESSION_COOKIE, app.state.sessions.session_value(ADMIN[0]), path="/bi")
    assert genuine.get("/bi/api/me").json()["email"] == ADMIN[0]
    # Removing the user ends their session at the next request.
    users.remove_user("temp@bi.example")
    assert client.get("/bi/api/me").status_code == 401
    # Logout from the page's form.
    client = _client(app)
    _form_login(client, *ADMIN)
    home = client.get("/bi/")
    out = client.post("/bi/logout", data={"csrf_token": _token(home.text)},
                      follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/bi/login"
    assert client.get("/bi/", follow_redirects=False).status_code == 303


def test_an_analyst_is_no_admin_and_next_never_leaves_the_tier(app: Any) -> None:
    app.state.users.add_user("ann@bi.example", "analyst-pass-1", role="analyst")
    client = _client(app)
    for target in ("https://evil.example/", "//evil.example/bi/", "/elsewhere"):
        answer = _form_login(client, "ann@bi.example", "analyst-pass-1", next_path=target)
        assert answer.headers["location"] == "/bi/"
    assert client.get("/bi/users").status_code == 403
    assert 'data-testid="nav-users"' not in client.get("/bi/").text
    # An address that is no BI user (here the store's administrator) gets nowhere.
    shopper = client.post("/bi/api/session", json={"email": "admin@tierlake.local",
                                                   "password": "admin-password"})
    assert shopper.status_code == 401
