"""Where the app tier's time goes: one request at a time, in process, stage by stage.

Companion of ``bench/http_bench.py`` (which measures req/s over HTTP under
load). Here there is no network and no concurrency: each stage runs the same
request N times in one process, one after the other, and the table gives the
mean time per request and its ratio to the ANCHOR's handler (raw DB-API driver
+ ``json.dumps``, from ``bench/anchor_app.py``), measured in the same run on
the same database:

* ``anchor handler``: the anchor's handler body, no HTTP (raw driver, dicts, JSON);
* ``anchor ASGI``: the anchor's Starlette app called as ASGI (routing, thread pool);
* ``tierlake service``: tierlake's service call(s) with the ORM, returning the
  pydantic models (checkout: the bearer-token lookup + ``orders.place_order``);
* ``tierlake ASGI, log INFO``: ``create_app()`` called as ASGI, the production
  logging (one access-log line per request, to /dev/null here);
* ``tierlake ASGI, log WARNING``: the same without the access-log line.

    .venv/bin/python bench/stage_breakdown.py                   # SQLite
    .venv/bin/python bench/stage_breakdown.py --backend mariadb # a throw-away MariaDB server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import structlog  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

from starlette.datastructures import Headers  # noqa: E402
from starlette.requests import Request  # noqa: E402

from anchor_app import make_app as make_anchor  # noqa: E402
from benchdata import build_store  # noqa: E402
from tierlake.app.cache import Cache  # noqa: E402
from tierlake.app.main import create_app  # noqa: E402
from tierlake.app.schemas import OrderCreate  # noqa: E402
from tierlake.app.services import catalogue, orders  # noqa: E402
from tierlake.config import Settings  # noqa: E402
from tierlake.data.db import Database  # noqa: E402
from tierlake.logging import configure_logging  # noqa: E402

SHIPPING = {"shipping": {"name": "Ada Bench", "address": "1 Loop Road", "city": "Localhost",
                         "postcode": "12345", "country": "DE"}}
BODY = json.dumps(SHIPPING).encode()


async def asgi(app, method: str, path: str, query: str = "",  # type: ignore[no-untyped-def]
               headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        + [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "state": {},
    }
    delivered = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    status, chunks = 0, []

    async def send(message):  # type: ignore[no-untyped-def]
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _stats(samples: list[float]) -> dict:
    return {"mean_ms": statistics.fmean(samples) * 1000,
            "median_ms": statistics.median(samples) * 1000}


def timed_asgi(loop, call, n: int, warm: int) -> dict:  # type: ignore[no-untyped-def]
    """Time ``await call(i)``, all requests inside one running event loop (as in a server)."""

    async def go() -> list[float]:
        for i in range(warm):
            await call(i)
        samples = []
        for i in range(warm, warm + n):
            t = time.perf_counter()
            await call(i)
            samples.append(time.perf_counter() - t)
        return samples

    return _stats(loop.run_until_complete(go()))


def timed(fn: Callable[[int], object], n: int, warm: int) -> dict:
    for i in range(warm):
        fn(i)
    samples = []
    for i in range(warm, warm + n):
        t = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t)
    return _stats(samples)


@contextlib.contextmanager
def app_logging(level: str):  # type: ignore[no-untyped-def]
    """tierlake's production logging set-up, writing to /dev/null."""
    real = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull  # for the whole block: our lines go to the sys.stderr of the moment
        try:
            configure_logging(level, "console", "app")
            yield
        finally:
            sys.stderr = real
            logging.getLogger().handlers[:] = []
            structlog.reset_defaults()
            structlog.configure(
                wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def run(url: str, n: int, warm: int) -> dict[str, dict[str, dict]]:
    per_stage = n + warm
    store = build_store(url, customers=5 * per_stage + 10)
    tokens = iter(store.tokens)
    db = Database(url)
    tl_app = create_app(Settings(database_url=url, cache={"enabled": False}), db)
    an_app = make_anchor(url)
    import uvloop  # what uvicorn runs on

    loop = uvloop.new_event_loop()
    pages = -(-store.products // 24)

    def page_query(i: int) -> str:
        return f"page={i % pages + 1}&page_size=24"

    def ok(status: int, want: int) -> None:
        if status != want:
            raise RuntimeError(f"status {status}, expected {want}")

    results: dict[str, dict[str, dict]] = {"catalogue": {}, "checkout": {}}
    cat = results["catalogue"]

    def anchor_handler_cat(i: int) -> None:
        scope = {"type": "http", "query_string": page_query(i).encode(), "headers": []}
        ok(an_app.state.list_products(Request(scope)).status_code, 200)

    def tl_service_cat(i: int) -> None:  # what the route runs with the cache off
        db.run(lambda conn: catalogue.listing_json(conn, page=i % pages + 1, page_size=24))

    def asgi_cat(app):  # type: ignore[no-untyped-def]
        async def call(i: int) -> None:
            ok((await asgi(app, "GET", "/api/v1/products", page_query(i)))[0], 200)
        return call

    cat["anchor handler"] = timed(anchor_handler_cat, n, warm)
    cat["anchor ASGI"] = timed_asgi(loop, asgi_cat(an_app), n, warm)
    cat["tierlake service"] = timed(tl_service_cat, n, warm)
    with app_logging("INFO"):
        cat["tierlake ASGI, log INFO"] = timed_asgi(loop, asgi_cat(tl_app), n, warm)
    with app_logging("WARNING"):
        cat["tierlake ASGI, log WARNING"] = timed_asgi(loop, asgi_cat(tl_app), n, warm)

    co = results["checkout"]

    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {next(tokens)}", "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": "application/json"}

    def anchor_handler_co(_: int) -> None:
        ok(an_app.state.place_order(Headers(headers()), BODY).status_code, 201)

    body = OrderCreate.model_validate(SHIPPING)
    no_cache = Cache(None)

    def tl_service_co(_: int) -> None:  # the route's one call: token lookup, hold, checkout
        _, created = orders.checkout(db, no_cache, next(tokens), uuid.uuid4().hex, body)
        if not created:
            raise RuntimeError("not created")

    def asgi_co(app):  # type: ignore[no-untyped-def]
        async def call(_: int) -> None:
            ok((await asgi(app, "POST", "/api/v1/orders", headers=headers(), body=BODY))[0], 201)
        return call

    co["anchor handler"] = timed(anchor_handler_co, n, warm)
    co["anchor ASGI"] = timed_asgi(loop, asgi_co(an_app), n, warm)
    co["tierlake service"] = timed(tl_service_co, n, warm)
    with app_logging("INFO"):
        co["tierlake ASGI, log INFO"] = timed_asgi(loop, asgi_co(tl_app), n, warm)
    with app_logging("WARNING"):
        co["tierlake ASGI, log WARNING"] = timed_asgi(loop, asgi_co(tl_app), n, warm)
    loop.close()
    db.dispose()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "mariadb"), default="sqlite")
    p.add_argument("-n", type=int, default=400, help="requests per stage [default: %(default)s]")
    p.add_argument("--warm", type=int, default=50, help="unrecorded requests first")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "stages.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tierlake-stages-") as tmp:
        if args.backend == "sqlite":
            results = run(f"sqlite:///{Path(tmp) / 'stages.db'}", args.n, args.warm)
        else:
            from servers import mariadb_server

            with mariadb_server() as server:
                results = run(server.create_database("stages"), args.n, args.warm)
    print(f"backend {args.backend}; {args.n} sequential requests per stage, in process; "
          "ratio = stage time / anchor handler time")
    for endpoint, stages in results.items():
        base = stages["anchor handler"]["mean_ms"]
        print(f"\n| {endpoint} stage | mean ms | median ms | x anchor handler |\n|---|---|---|---|")
        for name, r in stages.items():
            print(f"| {name} | {r['mean_ms']:.2f} | {r['median_ms']:.2f} | "
                  f"{r['mean_ms'] / base:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"backend": args.backend, "n": args.n, "stages": results},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
