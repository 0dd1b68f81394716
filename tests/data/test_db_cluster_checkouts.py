"""The store on the database cluster: a real app-tier process on the writer endpoint with the
reader endpoint as its read replica.

- Read-your-writes: with the replica lagging on purpose (its SQL thread stopped), a customer
  who just ordered sees the order in their history, while a search (stale reads allowed)
  is served by the lagging replica.
- A replica that cannot be reached costs no request: reads go to the primary, said once.
- The extract reads the replica only when it is within the extract's lookback, and says so.
- Failover under a steady stream of store checkouts (idempotency keys, retried with the same
  key on any error): SIGKILL the primary; every acknowledged order is on the new primary
  exactly once, stock taken once per order, and checkouts resume; the time from the kill to
  the first acknowledged checkout is printed.

The tests share one cluster and one app process (module scope); the failover test runs last.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy import select, text

import servers
from db_clusters import RunningCluster, running_cluster, wait_until
from servers import free_port
from tierlake.app.security import hash_password
from tierlake.data.db import Database, create_db_engine
from tierlake.data.migrate import upgrade
from tierlake.data.schema import Customer, Inventory, Order, OrderLine
from tierlake.fleet.lifeline import die_with_parent

pytestmark = pytest.mark.timeout(240)

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin-password-1"
SHIPPING = {"shipping": {"name": "Ada Lovelace", "address": "12 Analytical Row",
                         "city": "London", "postcode": "N1 7AA", "country": "GB"}}
STOCK = 100_000
SHOPPERS = 4


@dataclass
class Store:
    """The cluster, the app process in front of it and an admin's token."""

    running: RunningCluster
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    admin: dict[str, str]

    @property
    def writer_url(self) -> str:
        return self.running.cluster.writer_url

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def register(self) -> dict[str, str]:
        r = httpx.post(f"{self.url}/api/v1/auth/register", timeout=30, json={
            "email": f"shopper-{uuid.uuid4().hex[:10]}@example.com",
            "password": "password-123", "name": "Shopper"})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def searched_stock(self, product_id: int) -> int:
        """The stock a search shows (a search is not cached: it reads what the replica has)."""
        r = httpx.get(f"{self.url}/api/v1/products/{product_id}", timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.get(f"{self.url}/api/v1/products", params={"q": r.json()["sku"]}, timeout=30)
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
        return int(item["stock"])

    def product(self, stock: int) -> int:
        httpx.post(f"{self.url}/api/v1/admin/categories", headers=self.admin, timeout=30,
                   json={"slug": "books", "name": "Books"})
        sku = f"SKU-{uuid.uuid4().hex[:8].upper()}"
        r = httpx.post(f"{self.url}/api/v1/admin/products", headers=self.admin, timeout=30,
                       json={"sku": sku, "name": f"Deep Work {sku}", "category": "books",
                             "price_cents": 1999, "stock": stock})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def shown_stock(self, product_id: int) -> int:
        r = httpx.get(f"{self.url}/api/v1/products/{product_id}", timeout=30)
        assert r.status_code == 200, r.text
        return int(r.json()["stock"])


def _wait_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the app tier exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the app tier did not answer:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with running_cluster(check_interval=0.5) as running:
        cluster = running.cluster
        engine = create_db_engine(cluster.writer_url, pool_size=1)
        upgrade(engine)
        engine.dispose()
        db = Database(cluster.writer_url)
        with db.session() as s:
            s.add(Customer(email=ADMIN_EMAIL, name="Admin", is_admin=True,
                           password_hash=hash_password(ADMIN_PASSWORD)))
        db.dispose()
        port = free_port()
        log = servers.scratch_dir("app-on-cluster") / "app.log"
        env = {**os.environ,
               "TIERLAKE_DATABASE_URL": cluster.writer_url,
               "TIERLAKE_DATABASE_REPLICA_URLS": json.dumps([cluster.reader_url]),
               # The replica stays in use while it lags on purpose (read-your-writes test).
               "TIERLAKE_DATABASE_REPLICA_MAX_LAG_SECONDS": "600",
               # A hold left by a checkout the kill interrupted lapses soon.
               "TIERLAKE_LIMITS__IDEMPOTENCY_LEASE_SECONDS": "2",
               "TIERLAKE_LOG_FORMAT": "json"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tierlake", "serve", "app", "--host", "127.0.0.1",
                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_serving(url, proc, log)
            r = httpx.post(f"{url}/api/v1/auth/login", timeout=30,
                           json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            yield Store(running, url, proc, log,
                        {"Authorization": f"Bearer {r.json()['token']}"})
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_db_cluster_customer_sees_own_order_while_the_replica_lags(store: Store) -> None:
    cluster = store.running.cluster
    shopper = store.register()
    product = store.product(stock=10)
    wait_until("the replica shows the new product", lambda: _replica_has(store, product))
    standby = cluster.standby
    standby.execute("STOP SLAVE SQL_THREAD")  # the replica receives but applies nothing
    try:
        placed = []
        for _ in range(3):
            r = httpx.put(f"{store.url}/api/v1/cart/items/{product}", headers=shopper,
                          json={"quantity": 1}, timeout=30)
            assert r.status_code == 200, r.text
            r = httpx.post(f"{store.url}/api/v1/orders", timeout=30, json=SHIPPING,
                           headers={**shopper, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            placed.append(r.json()["id"])
            # The customer's own history and order page show it at once...
            history = httpx.get(f"{store.url}/api/v1/orders", headers=shopper, timeout=30)
            assert history.status_code == 200, history.text
            assert [o["id"] for o in history.json()["items"]] == placed[::-1]
            r = httpx.get(f"{store.url}/api/v1/orders/{placed[-1]}", headers=shopper,
                          timeout=30)
            assert r.status_code == 200, r.text
        # ... while a search comes from the replica, which has not applied them; the product
        # page's cache fill waits for the replica like the history, and so shows the stock.
        assert store.searched_stock(product) == 10
        assert store.shown_stock(product) == 7
        with create_db_engine(cluster.writer_url, pool_size=1).connect() as conn:
            assert conn.scalar(select(Inventory.quantity).where(
                Inventory.product_id == product)) == 7
    finally:
        standby.execute("START SLAVE SQL_THREAD")
    wait_until("the replica catches up", lambda: store.searched_stock(product) == 7)


def _replica_has(store: Store, product_id: int) -> bool:
    with create_db_engine(store.running.cluster.reader_url, pool_size=1).connect() as conn:
        return conn.execute(text("SELECT 1 FROM products WHERE id = :id"),
                            {"id": product_id}).first() is not None


def test_db_cluster_unreachable_replica_sends_reads_to_the_primary(store: Store) -> None:
    closed = free_port()  # nothing listens there
    replica = store.writer_url.replace(f":{store.running.cluster.writer.port}/", f":{closed}/")
    db = Database(store.writer_url, replica_urls=[replica], replica_check_interval=0.2)
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                assert db.run(lambda c: c.scalar(text("SELECT COUNT(*) FROM products")),
                              stale_ok=True) >= 1
            wait_until("the monitor has seen it down", lambda: not db.replicas[0].available)
            for _ in range(5):
                assert db.run(lambda c: c.scalar(text("SELECT COUNT(*) FROM products")),
                              stale_ok=True, read_your_writes=True) >= 1
        skipped = [e for e in logs if e["event"] == "db.replica_skipped"]
        assert len(skipped) == 1, skipped  # said once, not once per read
        assert "unreachable" in skipped[0]["reason"]
        assert db.replica_status()[0]["available"] is False
    finally:
        db.dispose()


def _pipeline_extract(store: Store, data_dir: Path) -> str:
    """``tierlake pipeline extract`` as a process (as the control plane's scheduler runs it:
    ConnectorX holds the GIL while it connects, so the endpoints, on an event loop in this
    process, must not share it)."""
    cluster = store.running.cluster
    result = subprocess.run(
        [sys.executable, "-m", "tierlake", "pipeline", "extract", "--no-progress"],
        capture_output=True, text=True, timeout=180, env={
            **os.environ, "TIERLAKE_DATA_DIR": str(data_dir),
            "TIERLAKE_DATABASE_URL": cluster.writer_url,
            "TIERLAKE_DATABASE_REPLICA_URLS": json.dumps([cluster.reader_url]),
            "TIERLAKE_EXTRACT__LOOKBACK_SECONDS": "1", "TIERLAKE_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("store read from: ")]
    logged = [json.loads(ln)["source"] for ln in result.stderr.splitlines()
              if '"extract.database"' in ln]
    assert logged == [line.removeprefix("store read from: ")], result.stderr[-3000:]
    return line.removeprefix("store read from: ")


def test_db_cluster_extract_reads_the_replica_only_within_its_lookback(store: Store) -> None:
    cluster = store.running.cluster
    product = store.product(stock=5)
    wait_until("the replica has the product", lambda: _replica_has(store, product))
    data_dir = servers.scratch_dir("lake-on-cluster")
    try:
        assert _pipeline_extract(store, data_dir).startswith("replica ")
        # Lagging: a change the replica has not applied, and it cannot catch up in time.
        cluster.standby.execute("STOP SLAVE SQL_THREAD")
        try:
            r = httpx.put(f"{store.url}/api/v1/admin/products/{product}/stock",
                          json={"quantity": 4}, headers=store.admin, timeout=30)
            assert r.status_code == 200, r.text
            assert _pipeline_extract(store, data_dir).startswith("primary ")
        finally:
            cluster.standby.execute("START SLAVE SQL_THREAD")
        status = json.loads((data_dir / "pipeline" / "status.json").read_text())
        assert status["database_source"].startswith("primary ")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Acknowledged:
    order_id: int
    key: str
    sent: float  # when the attempt that succeeded was sent
    answered: float


@dataclass
class CheckoutStream:
    """One thread per shopper: put one unit in the cart, check out with a new key; any
    error (a 503, a dropped connection, a 409 for a checkout still held) is retried with the
    same key until the order is acknowledged. Stopping lets each finish its order."""

    url: str
    shoppers: list[dict[str, str]]
    product: int
    acknowledged: list[Acknowledged] = field(default_factory=list)
    failed_attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(h,), daemon=True)
                         for h in self.shoppers]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)
            assert not t.is_alive(), "a shopper could not finish its checkout"

    @property
    def count(self) -> int:
        return len(self.acknowledged)

    def _failed(self, why: str) -> None:
        with self._lock:
            self.failed_attempts += 1
            if len(self.errors) < 50:
                self.errors.append(why)
        time.sleep(0.05)

    def _run(self, headers: dict[str, str]) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                key = uuid.uuid4().hex
                while True:  # the cart holds one unit (PUT sets the quantity: idempotent)
                    try:
                        r = client.put(f"/api/v1/cart/items/{self.product}", headers=headers,
                                       json={"quantity": 1})
                    except httpx.HTTPError as exc:
                        self._failed(f"cart: {exc!r}")
                        continue
                    if r.status_code == 200:
                        break
                    self._failed(f"cart: {r.status_code} {r.text[:200]}")
                while True:  # the checkout, retried with the same key until acknowledged
                    sent = time.monotonic()
                    try:
                        r = client.post("/api/v1/orders", json=SHIPPING,
                                        headers={**headers, "Idempotency-Key": key})
                    except httpx.HTTPError as exc:
                        self._failed(f"checkout: {exc!r}")
                        continue
                    if r.status_code in (200, 201):
                        with self._lock:
                            self.acknowledged.append(Acknowledged(
                                r.json()["id"], key, sent, time.monotonic()))
                        break
                    self._failed(f"checkout: {r.status_code} {r.text[:200]}")


def test_db_cluster_failover_under_checkouts_loses_and_duplicates_no_order(
        store: Store) -> None:
    running = store.running
    cluster = running.cluster
    product = store.product(stock=STOCK)
    stream = CheckoutStream(store.url, [store.register() for _ in range(SHOPPERS)], product)
    stream.start()
    wait_until("20 checkouts acknowledged", lambda: stream.count >= 20)
    old = cluster.primary_name
    os.kill(running.member(old)["Pid"], signal.SIGKILL)
    killed = time.monotonic()
    before = stream.count
    wait_until("a checkout sent after the kill is acknowledged",
               lambda: any(a.sent > killed for a in list(stream.acknowledged)))
    resumed = stream.count
    wait_until("20 more checkouts", lambda: stream.count >= resumed + 20)
    stream.stop()

    assert cluster.primary_name != old
    acked = stream.acknowledged
    with create_db_engine(store.writer_url, pool_size=1).connect() as conn:
        orders = conn.execute(select(Order.id, Order.idempotency_key).join(
            OrderLine, OrderLine.order_id == Order.id).where(
            OrderLine.product_id == product)).all()
        stock = conn.scalar(select(Inventory.quantity).where(Inventory.product_id == product))
    placed = {(o.id, o.idempotency_key) for o in orders}
    acknowledged = {(a.order_id, a.key) for a in acked}
    assert len(acknowledged) == len(acked), "one order acknowledged for two checkouts"
    assert not acknowledged - placed, f"acknowledged orders lost: {acknowledged - placed}"
    assert not placed - acknowledged, f"orders placed twice: {placed - acknowledged}"
    assert stock == STOCK - len(acked), "stock taken more than once for an order"
    assert {(a.order_id, a.key) for a in acked[:before]} <= placed  # those before the kill
    assert not [e for e in stream.errors if ": 500 " in e], stream.errors
    first = min(a.answered for a in acked if a.sent > killed) - killed
    print(f"\nkill -> first acknowledged checkout: {first:.2f} s ({before} acknowledged "
          f"before the kill, {len(acked)} in all, all {len(placed)} on the new primary; "
          f"{stream.failed_attempts} failed attempt(s) retried)")
