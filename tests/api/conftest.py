"""Fixtures for the app tier: the API in-process over a real database (every backend).

``db`` takes an indirect parameter: ``"primary"`` (the default: the backend's database) or
``"replica"``: a MariaDB cluster's writer endpoint with its reader endpoint as the read
replica (``TIERLAKE_DATABASE_REPLICA_URLS``), so a test can run both ways::

    @pytest.mark.parametrize("db", ["primary", "replica"], indirect=True)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import delete

import servers
from db_clusters import RunningCluster, running_cluster
from servers import free_port
from tierlake.app.main import create_app
from tierlake.app.security import hash_password
from tierlake.config import Settings
from tierlake.data.db import Database, create_db_engine
from tierlake.data.migrate import upgrade
from tierlake.data.schema import STORE_TABLES, Base, Customer

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin-password-1"
SHIPPING = {"shipping": {"name": "Ada Lovelace", "address": "12 Analytical Row",
                         "city": "London", "postcode": "N1 7AA", "country": "GB"}}


@dataclass
class Api:
    """A TestClient plus helpers for the usual setup steps."""

    client: TestClient
    admin: dict[str, str]

    def register(self, email: str | None = None, password: str = "password-123") -> dict[str, str]:
        email = email or f"shopper-{uuid.uuid4().hex[:10]}@example.com"
        r = self.client.post("/api/v1/auth/register",
                             json={"email": email, "password": password, "name": "Shopper"})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def category(self, slug: str = "books", name: str = "Books") -> dict:
        r = self.client.post("/api/v1/admin/categories", json={"slug": slug, "name": name},
                             headers=self.admin)
        assert r.status_code in (201, 409), r.text
        return r.json()

    def product(self, name: str = "Deep Work", price_cents: int = 1999, stock: int = 10,
                category: str = "books", sku: str | None = None) -> dict:
        self.category(category, category.title())
        body = {"sku": sku or f"SKU-{uuid.uuid4().hex[:8].upper()}", "name": name,
                "category": category, "price_cents": price_cents, "stock": stock}
        r = self.client.post("/api/v1/admin/products", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    def add(self, headers: dict[str, str], product_id: int, quantity: int = 1) -> dict:
        r = self.client.put(f"/api/v1/cart/items/{product_id}", json={"quantity": quantity},
                            headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def checkout(self, headers: dict[str, str], key: str | None = None,  # type: ignore[no-untyped-def]
                 shipping: dict[str, str] | None = None):
        body = {"shipping": shipping} if shipping is not None else SHIPPING
        return self.client.post("/api/v1/orders", json=body,
                                headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})

    def stock(self, product_id: int, expected: int, timeout: float = 30.0) -> int:
        """The stock the product page shows once it shows ``expected`` (the page may come
        from a replica a moment behind the primary), or the last it showed."""
        deadline = time.monotonic() + timeout
        while True:
            shown = int(self.client.get(f"/api/v1/products/{product_id}").json()["stock"])
            if shown == expected or time.monotonic() > deadline:
                return shown
            time.sleep(0.05)

    @property
    def shipping(self) -> dict[str, str]:
        """The shipping address ``checkout`` sends by default."""
        return dict(SHIPPING["shipping"])


def make_admin(db: Database) -> None:
    with db.session() as s:
        s.add(Customer(email=ADMIN_EMAIL, name="Admin", is_admin=True,
                       password_hash=hash_password(ADMIN_PASSWORD)))


@pytest.fixture(scope="session")
def replicated() -> Iterator[RunningCluster]:
    """A primary and its replica (one cluster for the session), migrated to head."""
    with running_cluster(check_interval=0.5) as running:
        engine = create_db_engine(running.cluster.writer_url, pool_size=1)
        upgrade(engine)
        engine.dispose()
        yield running


@pytest.fixture
def db(request: pytest.FixtureRequest, database_server: servers.DatabaseServer
       ) -> Iterator[Database]:
    """The store's ``Database`` on a migrated, emptied database; with the parameter
    ``"replica"``, on a MariaDB primary with a read replica."""
    if getattr(request, "param", "primary") == "primary":
        database = Database(request.getfixturevalue("database_url"))
    else:
        if database_server.name != "mariadb":
            pytest.skip("read replicas run on MariaDB (the mariadb parametrisation covers it)")
        cluster = request.getfixturevalue("replicated").cluster
        engine = create_db_engine(cluster.writer_url, pool_size=1)
        with engine.begin() as conn:
            for name in reversed(STORE_TABLES):
                conn.execute(delete(Base.metadata.tables[name]))
        engine.dispose()
        database = Database(cluster.writer_url, replica_urls=[cluster.reader_url],
                            replica_check_interval=0.2)
    yield database
    database.dispose()


@pytest.fixture
def cache_mode() -> str:
    """The app's cache: ``memory`` (the default), ``redis`` or ``off``. Tests that must hold in
    every mode parametrize it: ``@pytest.mark.parametrize("cache_mode", [...])``."""
    return "memory"


def flushed_redis_url(request: pytest.FixtureRequest) -> str:
    """The session's Redis, emptied (entries of earlier tests' databases must not be seen)."""
    url: str = request.getfixturevalue("redis_server").url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def app_settings(cache_mode: str, request: pytest.FixtureRequest) -> Settings:
    if cache_mode == "redis":
        return Settings(cache_url=flushed_redis_url(request))
    if cache_mode == "off":
        return Settings(cache={"enabled": False})
    assert cache_mode == "memory", cache_mode
    return Settings()


@pytest.fixture
def api_app(db: Database, app_settings: Settings):  # type: ignore[no-untyped-def]
    return create_app(app_settings, db)


@pytest.fixture
def api(db: Database, api_app) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    make_admin(db)
    with TestClient(api_app, raise_server_exceptions=False) as client:
        r = client.post("/api/v1/auth/login",
                        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        yield Api(client, {"Authorization": f"Bearer {r.json()['token']}"})


@pytest.fixture
def server_url(api_app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app under test served by a real uvicorn on a free port (a thread of the test)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_app, host="127.0.0.1", port=port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
