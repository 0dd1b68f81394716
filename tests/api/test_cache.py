"""The app tier's cache (ElastiCache's role): what a shopper sees after a write, Redis dying
under it, stampedes, and the store's bounds.

Real parts throughout: app instances are ``tierlake serve app`` processes or apps served by
uvicorn on free ports, Redis is a real ``redis-server`` (killed with SIGKILL mid-test), and
database reads are counted with SQLAlchemy's ``before_cursor_execute`` event.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import event
from structlog.testing import capture_logs

import servers
from servers import free_port
from tierlake.app.cache import Cache, LocalStore, RedisStore
from tierlake.app.main import create_app
from tierlake.app.security import hash_password
from tierlake.config import CacheConfig, Settings
from tierlake.data.db import Database
from tierlake.data.schema import Customer

pytestmark = pytest.mark.timeout(180)

ADMIN = {"email": "cache-admin@example.com", "password": "admin-password-1"}
PAGE = "/api/v1/products?page=1&page_size=24"


# -- helpers ------------------------------------------------------------------------------------


def _add_admin(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.session() as s:
            s.add(Customer(email=ADMIN["email"], name="Admin", is_admin=True,
                           password_hash=hash_password(ADMIN["password"])))
    finally:
        db.dispose()


def _login(client: httpx.Client | TestClient) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json=ADMIN)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _seed(client: httpx.Client | TestClient, admin: dict[str, str], price: int = 1999) -> int:
    r = client.post("/api/v1/admin/categories", json={"slug": "books", "name": "Books"},
                    headers=admin)
    assert r.status_code in (201, 409), r.text
    r = client.post("/api/v1/admin/products", headers=admin, json={
        "sku": f"SKU-{uuid.uuid4().hex[:8].upper()}", "name": "Cached Book", "category": "books",
        "price_cents": price, "stock": 5})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _price(client: httpx.Client | TestClient, product_id: int) -> tuple[int, int]:
    """The product's price on its own page and on the catalogue's first page."""
    detail = client.get(f"/api/v1/products/{product_id}")
    page = client.get(PAGE)
    assert (detail.status_code, page.status_code) == (200, 200), (detail.text, page.text)
    (listed,) = [p["price_cents"] for p in page.json()["items"] if p["id"] == product_id]
    return detail.json()["price_cents"], listed


def _metric(client: httpx.Client | TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}" + (rf"\{{{re.escape(want)}\}}" if want else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{want}}} not in /metrics:\n{text}"
    return float(match.group(1))


@contextmanager
def _app_process(database_url: str, tmp_path: Path, **env: str) -> Iterator[httpx.Client]:
    """``tierlake serve app`` as its own process; a client on its address."""
    port = free_port()
    log_path = tmp_path / f"app-{port}.log"
    environ = {**os.environ, "TIERLAKE_DATABASE_URL": database_url,
               "TIERLAKE_DATA_DIR": str(tmp_path / "var"), **env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tierlake", "serve", "app", "--host", "127.0.0.1",
             "--port", str(port)], env=environ, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                log_path.read_text()[-3000:]
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port (a thread of the test)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _slow_product_reads(db: Database, seconds: float) -> Iterator[list[str]]:
    """Every statement reading the products table, each made to take ``seconds`` longer (so
    concurrent requests all arrive while the first read is still in the database)."""
    seen: list[str] = []

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if "FROM products" in statement:
            seen.append(statement)
            time.sleep(seconds)

    event.listen(db.engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)


async def _get_all(urls: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*[client.get(url) for url in urls])


# -- a write is seen through every instance -----------------------------------------------------


def test_a_price_change_is_seen_at_once_through_every_instance_sharing_redis(
        database_url: str, tmp_path: Path) -> None:
    _add_admin(database_url)
    with servers.RedisServer() as redis_server, ExitStack() as stack:
        first, second = (stack.enter_context(_app_process(
            database_url, tmp_path, TIERLAKE_CACHE_URL=redis_server.url)) for _ in range(2))
        admin = _login(first)
        product = _seed(first, admin)
        for client in (first, second, first, second):
            assert _price(client, product) == (1999, 1999)
        assert _metric(second, "tierlake_cache_hits_total", cache="product") >= 1
        assert _metric(first, "tierlake_cache_hits_total", cache="catalogue") >= 1

        r = first.patch(f"/api/v1/admin/products/{product}", json={"price_cents": 2499},
                        headers=admin)
        assert r.status_code == 200, r.text
        # The next page load, on either instance, shows the new price: no waiting for a TTL.
        assert _price(second, product) == (2499, 2499)
        assert _price(first, product) == (2499, 2499)
        # ... and it is cached again, for both.
        hits = _metric(first, "tierlake_cache_hits_total", cache="product")
        assert _price(first, product) == (2499, 2499)
        assert _metric(first, "tierlake_cache_hits_total", cache="product") > hits

        # A session logged out on one instance is refused on the other at once, though the
        # other had its lookup cached.
        shopper = _login(second)
        assert first.get("/api/v1/me", headers=shopper).status_code == 200
        assert second.get("/api/v1/me", headers=shopper).status_code == 200
        assert second.post("/api/v1/auth/logout", headers=shopper).status_code == 204
        r = first.get("/api/v1/me", headers=shopper)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token")


def test_in_process_caches_show_a_write_at_once_where_made_and_elsewhere_within_their_ttl(
        database_url: str, tmp_path: Path) -> None:
    """Without Redis each instance caches for itself: the instance that made the write drops
    its entries at once; another cannot be told, and its entries end with their TTL."""
    _add_admin(database_url)
    ttl = 3.0
    with ExitStack() as stack:
        first, second = (stack.enter_context(_app_process(
            database_url, tmp_path, TIERLAKE_CACHE__LOCAL_TTL_SECONDS=str(ttl)))
            for _ in range(2))
        admin = _login(first)
        product = _seed(first, admin)
        for client in (first, second, first, second):
            assert _price(client, product) == (1999, 1999)
        assert _metric(second, "tierlake_cache_hits_total", cache="product") >= 1

        r = first.patch(f"/api/v1/admin/products/{product}", json={"price_cents": 2499},
                        headers=admin)
        assert r.status_code == 200, r.text
        assert _price(first, product) == (2499, 2499)
        deadline = time.monotonic() + ttl + 15
        while (seen := _price(second, product)) != (2499, 2499):
            assert seen[0] in (1999, 2499) and seen[1] in (1999, 2499), seen
            assert time.monotonic() < deadline, "the other instance kept the old price"
            time.sleep(0.2)


def test_checkout_and_stock_changes_invalidate_the_product_page(api) -> None:  # type: ignore[no-untyped-def]
    shopper = api.register()
    p = api.product(name="Counted Mug", stock=5)
    url = f"/api/v1/products/{p['id']}"
    assert api.client.get(url).json()["stock"] == 5
    assert api.client.get(url).json()["stock"] == 5  # cached now
    api.add(shopper, p["id"], 2)
    assert api.checkout(shopper).status_code == 201
    assert api.client.get(url).json()["stock"] == 3
    r = api.client.put(f"{url.replace('/products', '/admin/products')}/stock",
                       json={"quantity": 0}, headers=api.admin)
    assert r.status_code == 200, r.text
    shown = api.client.get(url).json()
    assert (shown["stock"], shown["in_stock"]) == (0, False)
    listed = api.client.get("/api/v1/products?category=books").json()["items"]
    assert [(i["id"], i["in_stock"]) for i in listed] == [(p["id"], False)]


@pytest.mark.parametrize("cache_mode", ["redis"])
def test_with_redis_a_checkout_asks_redis_once_and_a_logged_out_token_is_refused(
        api, app_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """Checkout reads its token in its own transaction, not from Redis (a round trip as
    dear as the statement, two more on a miss): Redis sees the invalidation only."""
    shopper = api.register()
    p = api.product(name="Counted Kettle", stock=5)
    api.add(shopper, p["id"], 1)
    assert api.client.get("/api/v1/me", headers=shopper).status_code == 200  # now cached
    client = redis.Redis.from_url(app_settings.cache_url)
    try:
        before = int(client.info("stats")["total_commands_processed"])
        assert api.checkout(shopper).status_code == 201
        after = int(client.info("stats")["total_commands_processed"])
        # The INCRs of the invalidation (catalogue, the product), one pipelined round trip;
        # and the first INFO itself.
        assert after - before == 1 + 2
        api.add(shopper, p["id"], 1)
        assert api.client.post("/api/v1/auth/logout", headers=shopper).status_code == 204
        r = api.checkout(shopper)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_token"
    finally:
        client.close()


# -- Redis down --------------------------------------------------------------------------------


def test_redis_killed_mid_test_gives_no_500_and_the_cache_comes_back(db: Database) -> None:
    with servers.RedisServer() as redis_server:
        settings = Settings(cache_url=redis_server.url, cache={"retry_seconds": 0.2})
        _add_admin(str(db.url))
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
            admin = _login(client)
            product = _seed(client, admin)
            assert _price(client, product) == (1999, 1999)
            assert _price(client, product) == (1999, 1999)
            hits = _metric(client, "tierlake_cache_hits_total", cache="product")
            assert hits >= 1
            assert client.get("/ready").json()["checks"]["cache"] == {
                "ok": True, "status": "ok (redis)"}

            assert redis_server.proc is not None
            redis_server.proc.kill()
            redis_server.proc.wait()
            with capture_logs() as logs:
                for _ in range(3):
                    assert _price(client, product) == (1999, 1999)
                    assert client.get("/api/v1/categories").status_code == 200
                    time.sleep(0.1)
                # A write while Redis is down: committed, and seen (from the database).
                r = client.patch(f"/api/v1/admin/products/{product}",
                                 json={"price_cents": 2499}, headers=admin)
                assert r.status_code == 200, r.text
                assert _price(client, product) == (2499, 2499)
                assert client.get("/api/v1/me", headers=admin).status_code == 200
                ready = client.get("/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["status"] == "ok"
                assert ready.json()["checks"]["cache"]["status"] == "degraded (redis down)"
                assert _metric(client, "tierlake_cache_up", mode="redis") == 0
            down = [e for e in logs if e["event"] == "cache.redis_down"]
            assert len(down) == 1, logs  # once per incident, not per request
            assert "serving from the database" in down[0]["detail"]

            # Redis back on the same address: the cache is used again.
            assert redis_server._spawn_and_wait()
            deadline = time.monotonic() + 30
            while client.get("/ready").json()["checks"]["cache"]["ok"] is not True:
                assert time.monotonic() < deadline, "the cache did not come back"
                time.sleep(0.2)
            assert _price(client, product) == (2499, 2499)
            hits = _metric(client, "tierlake_cache_hits_total", cache="product")
            assert _price(client, product) == (2499, 2499)
            assert _metric(client, "tierlake_cache_hits_total", cache="product") > hits
            assert _metric(client, "tierlake_cache_up", mode="redis") == 1


# -- stampedes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_mode", ["memory", "redis"])
def test_concurrent_misses_on_one_key_read_the_database_once(api, db, server_url) -> None:  # type: ignore[no-untyped-def]
    api.product(name="Hot Item", stock=5)
    with _slow_product_reads(db, 0.3) as reads:
        responses = asyncio.run(_get_all([server_url + PAGE] * 20))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    # One page = one count and one page query; twenty requests, one load.
    assert len(reads) == 2, reads


def test_concurrent_misses_on_two_instances_sharing_redis_read_the_database_once(
        db: Database, redis_server: servers.RedisServer) -> None:
    """The in-process single flight cannot span instances: the Redis fill lock does."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    settings = Settings(cache_url=redis_server.url)
    apps = [create_app(settings, db) for _ in range(2)]  # two caches, as two instances
    _add_admin(str(db.url))
    with TestClient(apps[0]) as client:
        _seed(client, _login(client))
    with ExitStack() as stack:
        urls = [stack.enter_context(_served(app)) for app in apps]
        with _slow_product_reads(db, 0.3) as reads:
            responses = asyncio.run(_get_all([url + PAGE for url in urls] * 10))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    assert len(reads) == 2, reads


# -- the in-process store -----------------------------------------------------------------------


def test_the_in_process_store_is_bounded_and_evicts_the_least_recently_used() -> None:
    store = LocalStore(max_entries=16)
    for n in range(16):
        generation, _ = store.get("ns", str(n))
        assert store.put("ns", str(n), generation, f"v{n}".encode(), ttl=60)
    assert store.get("ns", "0")[1] == b"v0"  # used: the most recent now
    for n in range(16, 20):
        store.put("ns", str(n), store.get("ns", str(n))[0], b"new", ttl=60)
    assert store.size() == 16 and store.evictions() == 4
    assert store.get("ns", "0")[1] == b"v0"
    assert [store.get("ns", str(n))[1] for n in range(1, 5)] == [None] * 4


def test_an_entry_ends_with_its_ttl_and_a_fill_after_an_invalidation_is_dropped() -> None:
    store = LocalStore(max_entries=100)
    store.put("ns", "short", store.get("ns", "short")[0], b"x", ttl=0.05)
    time.sleep(0.1)
    assert store.get("ns", "short")[1] is None
    # A reader missed (generation read), loaded the old value, and a write invalidated the
    # namespace before the reader's fill: the old value is not kept.
    generation, _ = store.get("catalogue", "page")
    store.bump(["catalogue"])
    assert not store.put("catalogue", "page", generation, b"old price", ttl=60)
    assert store.get("catalogue", "page")[1] is None
    assert store.put("catalogue", "page", store.get("catalogue", "page")[0], b"new", ttl=60)
    assert store.get("catalogue", "page")[1] == b"new"
    store.new_epoch()  # everything, every namespace
    assert store.get("catalogue", "page")[1] is None


def test_metrics_show_hits_misses_hit_rate_and_evictions(db: Database) -> None:
    cache = Cache(LocalStore(max_entries=16), CacheConfig(max_entries=16))
    _add_admin(str(db.url))
    with TestClient(create_app(Settings(), db, cache)) as client:
        _seed(client, _login(client))
        for _ in range(4):
            assert client.get(PAGE).status_code == 200
        assert _metric(client, "tierlake_cache_hits_total", cache="catalogue") == 3
        assert _metric(client, "tierlake_cache_misses_total", cache="catalogue") == 1
        assert _metric(client, "tierlake_cache_hit_rate", cache="catalogue") == 75.0
        for page in range(1, 30):
            assert client.get(f"/api/v1/products?page={page}&page_size=5").status_code == 200
        assert _metric(client, "tierlake_cache_evictions_total") > 0
        assert _metric(client, "tierlake_cache_entries") == 16
        assert 'tierlake_cache_latency_seconds_count{op="get"}' in client.get("/metrics").text


def test_the_redis_store_drops_a_fill_after_an_invalidation_and_an_epoch_retires_all(
        redis_server: servers.RedisServer) -> None:
    store = RedisStore(redis_server.url)
    try:
        store.client.flushdb()
        generation, value = store.get("catalogue", "page")
        assert value is None
        store.bump(["catalogue"])  # a write committed while the reader was loading
        assert not store.put("catalogue", "page", generation, b"old price", ttl=60)
        assert store.get("catalogue", "page")[1] is None
        generation, _ = store.get("catalogue", "page")
        assert store.put("catalogue", "page", generation, b"new price", ttl=60)
        assert store.put("product:7", "detail", store.get("product:7", "detail")[0], b"p7",
                         ttl=60)
        assert store.get("catalogue", "page")[1] == b"new price"
        store.bump(["product:8"])  # another namespace: this entry stays
        assert store.get("catalogue", "page")[1] == b"new price"
        store.new_epoch()
        assert store.get("catalogue", "page")[1] is None
        assert store.get("product:7", "detail")[1] is None
    finally:
        store.close()
