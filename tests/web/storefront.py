"""Test support for the web tier: the store front and the app tier, both in-process.

The web app talks to a real app tier (``tierlake.app.main.create_app``) over
``httpx.ASGITransport`` on a migrated database (every selected backend); tests drive the web app
with an ``httpx.AsyncClient`` that keeps cookies like a browser.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tierlake.app.main import create_app as create_api_app
from tierlake.app.security import hash_password
from tierlake.config import Settings
from tierlake.data.db import Database
from tierlake.data.schema import Customer
from tierlake.events import iter_events
from tierlake.web.main import create_app as create_web_app

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin-password-1"
PASSWORD = "password-123"
BASE = "http://shop.test"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "page has no CSRF token"
    return html.unescape(match.group(1))


def idempotency_key_of(page: str) -> str:
    match = _IDEM.search(page)
    assert match, "checkout page has no idempotency key"
    return match.group(1)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var", "secret_key": "web-test-secret",
        "app_url": "http://app.test",
        "events": {"dir": tmp_path / "events", "flush_seconds": 3600, "flush_records": 10_000},
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Store:
    """The two tiers plus a browser-like client and an admin token for seeding."""

    web_app: Any
    api: httpx.AsyncClient  # straight to the app tier, for seeding and checks
    admin: dict[str, str]
    events_dir: Path
    settings: Settings
    api_app: Any
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    instances: list[Any] = field(default_factory=list)

    def another_instance(self) -> Any:
        """A second web-tier instance with the same settings (as behind a load balancer)."""
        app = create_web_app(self.settings, app_transport=httpx.ASGITransport(self.api_app))
        self.instances.append(app)
        return app

    def browser(self) -> httpx.AsyncClient:
        """A new visitor (own cookie jar)."""
        client = httpx.AsyncClient(transport=httpx.ASGITransport(self.web_app), base_url=BASE,
                                   follow_redirects=False)
        self.clients.append(client)
        return client

    async def category(self, slug: str, name: str) -> dict:
        r = await self.api.post("/api/v1/admin/categories", json={"slug": slug, "name": name},
                                headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    async def product(self, name: str, price_cents: int, *, category: str, stock: int = 10,
                      description: str = "") -> dict:
        body = {"sku": f"SKU-{uuid.uuid4().hex[:8].upper()}", "name": name,
                "category": category, "price_cents": price_cents, "stock": stock,
                "description": description}
        r = await self.api.post("/api/v1/admin/products", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    async def set_stock(self, product_id: int, quantity: int) -> None:
        r = await self.api.put(f"/api/v1/admin/products/{product_id}/stock",
                               json={"quantity": quantity}, headers=self.admin)
        assert r.status_code == 200, r.text

    def events(self) -> list[dict]:
        self.web_app.state.event_log.flush()
        return list(iter_events(self.events_dir))


async def submit(client: httpx.AsyncClient, page_url: str, action: str,
                 data: dict[str, Any]) -> httpx.Response:
    """Open ``page_url`` like a browser, then post ``data`` with the page's CSRF token."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page.text), **data})


async def register(client: httpx.AsyncClient, email: str | None = None,
                   name: str = "Grace Hopper", next_path: str = "/") -> str:
    email = email or f"shopper-{uuid.uuid4().hex[:10]}@example.com"
    r = await submit(client, "/register", "/register",
                     {"email": email, "password": PASSWORD, "name": name, "country": "GB",
                      "next": next_path})
    assert r.status_code == 303, r.text
    return email


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD,
                next_path: str = "/") -> httpx.Response:
    return await submit(client, "/login", "/login",
                        {"email": email, "password": password, "next": next_path})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path, db: Database) -> AsyncIterator[Store]:
    """On every selected backend (the shared ``db`` fixture: migrated and emptied)."""
    with db.session() as s:
        s.add(Customer(email=ADMIN_EMAIL, name="Ada Admin", is_admin=True,
                       password_hash=hash_password(ADMIN_PASSWORD)))
    settings = settings_for(tmp_path)
    api_app = create_api_app(settings, db)
    web_app = create_web_app(settings, app_transport=httpx.ASGITransport(api_app))
    api = httpx.AsyncClient(transport=httpx.ASGITransport(api_app), base_url="http://app.test")
    r = await api.post("/api/v1/auth/login",
                       json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    shop = Store(web_app, api, {"Authorization": f"Bearer {r.json()['token']}"},
                 tmp_path / "events", settings, api_app)
    try:
        yield shop
    finally:
        for client in shop.clients:
            await client.aclose()
        await api.aclose()
        for app in (web_app, *shop.instances):
            await app.state.api.aclose()


@pytest.fixture
async def catalogue(store: Store) -> dict[str, dict]:
    """Two categories and a few products (one out of stock)."""
    await store.category("kitchen", "Kitchen")
    await store.category("books", "Books")
    return {
        "mug": await store.product("Ceramic Mug", 1234, category="kitchen", stock=10,
                                   description="A sturdy stoneware mug."),
        "knife": await store.product("Chef Knife", 8900, category="kitchen", stock=3),
        "book": await store.product("Deep Work", 1999, category="books", stock=0),
    }
