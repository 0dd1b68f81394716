"""App tier HTTP throughput: `tierlake serve app` against a minimal anchor, same run, same data.

For each backend (SQLite, MariaDB) two identical stores are built (SQLAlchemy
Core bulk inserts: a 240-product catalogue in 12 categories with stock, and
customers that each have a login token and a one-item cart). One is served by
``tierlake serve app`` (the production command, a subprocess), the other by the
ANCHOR, ``bench/anchor_app.py`` (plain Starlette on the same uvicorn, raw DB-API
driver, the same SQL). ``wrk`` then drives, against each in turn:

* catalogue: ``GET /api/v1/products?page=P&page_size=24``, P rotating over every
  page (``bench/lua/catalogue.lua``); both apps' pages are first checked to be
  the same JSON;
* checkout: ``POST /api/v1/orders``, each request a different customer (token
  + cart) with a unique ``Idempotency-Key`` (``bench/lua/checkout.lua``, which
  stops sending after the measurement time and waits for the answers in
  flight). After each run the database is checked: orders created == 2xx
  answers, stock, order lines, cart items and tombstones moved by the same.

It prints a table (requests/s of each, ratio tierlake/anchor, p50/p99 latency,
non-2xx) and writes ``bench/results/http.json``. Only 127.0.0.1 is contacted;
every run is bounded in time; servers are children that die with the bench.
The load generator (wrk) shares the machine's cores with the server and the DB.

    .venv/bin/python bench/http_bench.py                      # sqlite and mariadb, 10 s each
    .venv/bin/python bench/http_bench.py --quick --backends sqlite   # smoke run, < 1 min
    .venv/bin/python bench/http_bench.py --cache off          # the app tier's cache off
    .venv/bin/python bench/http_bench.py --cache redis        # ... in a Redis of its own

The app tier's cache is on (in process) unless ``--cache off``: the catalogue rows then
measure warm cache hits (every page is fetched once by the JSON check before timing); the
anchor has no cache.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))  # tests/servers.py: the real MariaDB server

from benchdata import Snapshot, build_store, snapshot  # noqa: E402

LUA = BENCH / "lua"
VENV_BIN = Path(sys.executable).parent
TARGETS = ("tierlake", "anchor")
SHIPPING = {"shipping": {"name": "Ada Bench", "address": "1 Loop Road", "city": "Localhost",
                         "postcode": "12345", "country": "DE"}}
HOST = "127.0.0.1"

_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no server outlives the bench


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    assert url.startswith(f"http://{HOST}:"), url  # loopback only
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# -- servers under test -------------------------------------------------------------------------


@dataclass
class Served:
    target: str
    url: str
    db_url: str
    tokens: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    next_token: int = 0

    def take_tokens(self, n: int) -> list[str]:
        chunk = self.tokens[self.next_token:self.next_token + n]
        self.next_token += len(chunk)
        return chunk


@contextmanager
def serve(target: str, db_url: str, tokens: list[str], workdir: Path, logdir: Path,
          app_env: dict[str, str]):  # type: ignore[no-untyped-def]
    port = free_port()
    log = logdir / f"{target}-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERLAKE_")}
    if target == "tierlake":
        script = VENV_BIN / "tierlake"  # the production command; `python -m tierlake` is the same
        cmd = [*([str(script)] if script.exists() else [sys.executable, "-m", "tierlake"]),
               "serve", "app", "--host", HOST, "--port", str(port)]
        env.update(TIERLAKE_DATABASE_URL=db_url, TIERLAKE_DATA_DIR=str(workdir),
                   TIERLAKE_CONFIG=str(workdir / "absent.toml"), **app_env)
        ready = f"http://{HOST}:{port}/api/v1/ready"
    else:
        cmd = [sys.executable, str(BENCH / "anchor_app.py"), "--db", db_url, "--host", HOST,
               "--port", str(port)]
        ready = f"http://{HOST}:{port}/health"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=workdir, env=env, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} exited {proc.returncode} while starting; see {log}:"
                                   f"\n{log.read_text(errors='replace')[-2000:]}")
            try:
                if http("GET", ready, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} not ready after 60 s; see {log}")
            time.sleep(0.1)
        yield Served(target, f"http://{HOST}:{port}", db_url, tokens, log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- wrk ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: str, script_args: list[str], seconds: float, *, threads: int,
            connections: int, stop_on_lua: bool = False,
            pids: dict[str, int] | None = None) -> dict:
    """Run wrk; returns the script's ``@@result`` JSON plus wrk's text summary.

    With ``stop_on_lua`` the script stops its threads itself (after ``seconds`` and
    the answers in flight): wrk is given a generous ``-d`` as a hard bound and is
    sent SIGINT once every thread has reported ``@@stopped``, so that its
    measured duration is the real one.
    """
    hard = seconds + 30 if stop_on_lua else seconds
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(hard))}s",
           "--timeout", "10s", "-s", str(LUA / script), url, "--", *script_args]
    load = os.getloadavg()[0]
    cpu0 = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_die_with_parent)
    killer = threading.Timer(hard + 60, proc.kill)  # belt and braces: wrk bounds itself
    killer.start()
    stopped, result, text = 0, None, []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@@stopped"):
                stopped += 1
                if stop_on_lua and stopped == threads:
                    proc.send_signal(signal.SIGINT)
            elif line.startswith("@@result "):
                result = json.loads(line[len("@@result "):])
            else:
                text.append(line.rstrip())
        proc.wait()
    finally:
        killer.cancel()
    if result is None:
        raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n" + "\n".join(text))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # CPU the server (and the DB server) used per request: less sensitive than req/s to
    # other processes on the machine.
    result["cpu_ms_per_request"] = {
        name: round((cpu_seconds(pid) - cpu0[name]) * 1000 / max(1, result["requests"]), 3)
        for name, pid in (pids or {}).items()}
    result["loadavg_1m_at_start"] = round(load, 2)
    result["threads_stopped_by_script"] = stopped
    result["wrk_text"] = text
    return result


# -- measurements -------------------------------------------------------------------------------


def check_catalogue_same(tl: Served, anchor: Served, pages: int, page_size: int) -> dict:
    diffs = []
    for page in range(1, pages + 1):
        path = f"/api/v1/products?page={page}&page_size={page_size}"
        a, b = http("GET", tl.url + path), http("GET", anchor.url + path)
        if a != b:
            diffs.append({"page": page, "tierlake_status": a[0], "anchor_status": b[0]})
    return {"pages_compared": pages, "identical_json": not diffs, "differences": diffs}


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def probe_checkout(served: Served) -> tuple[int, Any]:
    token = served.take_tokens(1)[0]
    return http("POST", served.url + "/api/v1/orders", SHIPPING, {
        "Authorization": f"Bearer {token}", "Idempotency-Key": f"probe-{uuid.uuid4().hex}"})


def verify_checkout(before: Snapshot, after: Snapshot, res: dict) -> dict:
    created = after.orders - before.orders
    in_flight = res["sent"] - res["received"]  # 0 unless wrk's hard time bound cut the run
    checks = {
        "orders_created": created,
        "ok2xx": res["ok2xx"],
        "in_flight_unanswered": in_flight,
        "orders_match_2xx": res["ok2xx"] <= created <= res["ok2xx"] + in_flight
        if in_flight else created == res["ok2xx"],
        "stock_taken_matches": before.stock - after.stock == created,
        "order_lines_match": after.order_lines - before.order_lines == created,
        "cart_items_removed_match": before.cart_items - after.cart_items == created,
        "tombstones_match": after.tombstones - before.tombstones == created,
    }
    checks["ok"] = all(checks[k] for k in ("orders_match_2xx", "stock_taken_matches",
                                           "order_lines_match", "cart_items_removed_match",
                                           "tombstones_match"))
    return checks


def summarize(res: dict) -> dict:
    keep = ("rps", "requests", "duration_us", "ok2xx", "non2xx", "errors", "latency_us",
            "cpu_ms_per_request", "loadavg_1m_at_start")
    out = {k: res[k] for k in keep if k in res}
    for k in ("sent", "received", "exhausted_threads", "non2xx_by_thread",
              "threads_stopped_by_script", "verification"):
        if k in res:
            out[k] = res[k]
    return out


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    threads: int
    rounds: int
    pages: int
    page_size: int
    products: int
    categories: int
    token_rate: int
    endpoints: tuple[str, ...]


def customers_needed(o: Options) -> int:
    if "checkout" not in o.endpoints:
        return 0
    # A thread stops early (flagged "exhausted") if its share runs out; size generously.
    return int(o.token_rate * (o.warmup + o.duration * o.rounds)) + 16 * o.threads + 64


def bench_backend(backend: str, db_urls: dict[str, str], o: Options, workdir: Path,
                  logdir: Path, app_env: dict[str, str], say,  # type: ignore[no-untyped-def]
                  db_pid: int | None = None) -> dict:
    n_customers = customers_needed(o)
    stores = {}
    t0 = time.monotonic()
    for target in TARGETS:
        stores[target] = build_store(db_urls[target], products=o.products,
                                     categories=o.categories, customers=n_customers)
    say(f"[{backend}] built 2 stores ({o.products} products, {n_customers} customers with a "
        f"token and a one-item cart each) in {time.monotonic() - t0:.1f} s")
    out: dict[str, Any] = {"customers_per_store": n_customers, "endpoints": {}}
    with ExitStack() as stack:
        served = {t: stack.enter_context(serve(t, db_urls[t], stores[t].tokens, workdir, logdir,
                                               app_env)) for t in TARGETS}

        def pids(t: str) -> dict[str, int]:
            return {"server": served[t].proc.pid, **({"db": db_pid} if db_pid else {})}

        if "catalogue" in o.endpoints:
            same = check_catalogue_same(served["tierlake"], served["anchor"], o.pages,
                                        o.page_size)
            say(f"[{backend}] catalogue pages identical JSON in both apps: "
                f"{same['identical_json']}")
            runs: dict[str, list[dict]] = {t: [] for t in TARGETS}
            for rnd in range(o.rounds):
                order = TARGETS if rnd % 2 == 0 else TARGETS[::-1]
                for t in order:
                    args = [str(o.pages), str(o.page_size)]
                    url = served[t].url
                    if rnd == 0 and o.warmup > 0:
                        run_wrk(url, "catalogue.lua", args, o.warmup, threads=o.threads,
                                connections=o.connections)
                    res = run_wrk(url, "catalogue.lua", args, o.duration, threads=o.threads,
                                  connections=o.connections, pids=pids(t))
                    runs[t].append(summarize(res))
                    say(f"[{backend}] catalogue {t:8s} round {rnd + 1}: {res['rps']:8.1f} req/s "
                        f"p50 {res['latency_us']['p50'] / 1000:.1f} ms "
                        f"p99 {res['latency_us']['p99'] / 1000:.1f} ms non-2xx {res['non2xx']}; "
                        f"CPU/req {cpu_text(res)}; load {res['loadavg_1m_at_start']}")
            out["endpoints"]["catalogue"] = {"check": same, "runs": runs}
        if "checkout" in o.endpoints:
            shapes = {t: probe_checkout(served[t]) for t in TARGETS}
            same_shape = (shapes["tierlake"][0] == shapes["anchor"][0] == 201 and
                          _shape(shapes["tierlake"][1]) == _shape(shapes["anchor"][1]))
            say(f"[{backend}] checkout probe: tierlake {shapes['tierlake'][0]}, anchor "
                f"{shapes['anchor'][0]}, same JSON shape: {same_shape}")
            runs = {t: [] for t in TARGETS}
            verified = True
            for rnd in range(o.rounds):
                order = TARGETS if rnd % 2 == 0 else TARGETS[::-1]
                for t in order:
                    s = served[t]
                    phases = [("warmup", o.warmup)] if rnd == 0 and o.warmup > 0 else []
                    for phase, seconds in [*phases, ("measure", o.duration)]:
                        tokens = s.take_tokens(int(o.token_rate * seconds) + 16 * o.threads)
                        tok_file = workdir / f"tokens-{backend}-{t}-{rnd}-{phase}.txt"
                        tok_file.write_text("\n".join(tokens) + "\n")
                        before = snapshot(s.db_url)
                        res = run_wrk(s.url, "checkout.lua",
                                      [str(tok_file), str(seconds), f"bench-{t}-{rnd}-{phase}",
                                       str(o.threads)],
                                      seconds, threads=o.threads, connections=o.connections,
                                      stop_on_lua=True, pids=pids(t))
                        res["verification"] = verify_checkout(before, snapshot(s.db_url), res)
                        verified &= res["verification"]["ok"]
                        if phase == "measure":
                            runs[t].append(summarize(res))
                            v = res["verification"]
                            say(f"[{backend}] checkout  {t:8s} round {rnd + 1}: "
                                f"{res['rps']:8.1f} req/s p50 {res['latency_us']['p50'] / 1000:.1f}"
                                f" ms p99 {res['latency_us']['p99'] / 1000:.1f} ms non-2xx "
                                f"{res['non2xx']}"
                                + (f" {res['non2xx_by_thread']}" if res["non2xx"] else "")
                                + f"; CPU/req {cpu_text(res)}; load {res['loadavg_1m_at_start']}"
                                + "; orders created "
                                f"{v['orders_created']} == 2xx {v['ok2xx']}: "
                                f"{'OK' if v['ok'] else 'MISMATCH ' + json.dumps(v)}"
                                + (" [token share exhausted: stopped early]"
                                   if res["exhausted_threads"] else ""))
                        elif not res["verification"]["ok"]:
                            say(f"[{backend}] checkout {t} warm-up MISMATCH "
                                f"{json.dumps(res['verification'])}")
            out["endpoints"]["checkout"] = {
                "check": {"probe_status": {t: shapes[t][0] for t in TARGETS},
                          "same_json_shape": same_shape, "all_runs_verified": verified},
                "runs": runs}
    out["server_logs"] = {t: scan_log(served[t].log) for t in TARGETS}
    return out


def cpu_text(res: dict) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in res["cpu_ms_per_request"].items())


def scan_log(path: Path) -> dict:
    """Warnings and errors the server logged during the bench (e.g. SQLite lock retries)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return {"path": str(path), "db_retry": text.count("db.retry"),
            "request_failed": text.count("request.failed"),
            "tracebacks": text.count("Traceback"),
            "lines": text.count("\n")}


def _median(runs: list[dict], key: str, sub: str | None = None) -> float:
    vals = [r[key][sub] if sub else r[key] for r in runs]
    return statistics.median(vals)


def table(results: dict) -> list[dict]:
    rows = []
    for backend, b in results["backends"].items():
        for endpoint, e in b.get("endpoints", {}).items():
            tl, an = e["runs"]["tierlake"], e["runs"]["anchor"]
            row = {
                "backend": backend, "endpoint": endpoint,
                "tierlake_rps": _median(tl, "rps"), "anchor_rps": _median(an, "rps"),
                "tierlake_p50_ms": _median(tl, "latency_us", "p50") / 1000,
                "tierlake_p99_ms": _median(tl, "latency_us", "p99") / 1000,
                "anchor_p50_ms": _median(an, "latency_us", "p50") / 1000,
                "anchor_p99_ms": _median(an, "latency_us", "p99") / 1000,
                "tierlake_non2xx": sum(r["non2xx"] for r in tl),
                "anchor_non2xx": sum(r["non2xx"] for r in an),
                "tierlake_socket_errors": sum(sum(r["errors"][k] for k in
                                                  ("connect", "read", "write", "timeout"))
                                              for r in tl),
                "anchor_socket_errors": sum(sum(r["errors"][k] for k in
                                                ("connect", "read", "write", "timeout"))
                                            for r in an),
                "check": e["check"]["identical_json"] if endpoint == "catalogue" else
                (e["check"]["all_runs_verified"] and e["check"]["same_json_shape"]),
            }
            row["ratio"] = row["tierlake_rps"] / row["anchor_rps"] if row["anchor_rps"] else 0
            for who, runs in (("tierlake", tl), ("anchor", an)):
                for proc in runs[0].get("cpu_ms_per_request", {}):
                    row[f"{who}_{proc}_cpu_ms_per_req"] = statistics.median(
                        r["cpu_ms_per_request"][proc] for r in runs)
            rows.append(row)
    return rows


def _cpu(r: dict, who: str) -> str:
    app = r.get(f"{who}_server_cpu_ms_per_req")
    db = r.get(f"{who}_db_cpu_ms_per_req")
    if app is None:
        return "n/a"
    return f"{app:.2f}" + (f" + {db:.2f}" if db is not None else "")


def render(rows: list[dict]) -> str:
    head = ("| backend | endpoint | tierlake req/s | anchor req/s | ratio tierlake/anchor | "
            "tierlake p50 / p99 ms | anchor p50 / p99 ms | CPU ms/req tierlake (app + db) | "
            "CPU ms/req anchor (app + db) | non-2xx (tierlake/anchor) | check |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        check = ("same JSON" if r["endpoint"] == "catalogue" else "DB verified") \
            if r["check"] else "FAILED"
        lines.append(
            f"| {r['backend']} | {r['endpoint']} | {r['tierlake_rps']:.0f} | "
            f"{r['anchor_rps']:.0f} | {r['ratio']:.2f} | {r['tierlake_p50_ms']:.1f} / "
            f"{r['tierlake_p99_ms']:.1f} | {r['anchor_p50_ms']:.1f} / {r['anchor_p99_ms']:.1f} | "
            f"{_cpu(r, 'tierlake')} | {_cpu(r, 'anchor')} | "
            f"{r['tierlake_non2xx']} / {r['anchor_non2xx']} | {check} |")
    return "\n".join(lines)


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("uvicorn", "starlette", "fastapi", "pydantic", "sqlalchemy", "pymysql",
                "uvloop", "httptools"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = None
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    versions["wrk"] = (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) \
        else None
    mem = ""
    with suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "memory": mem,
            "loadavg_at_start": os.getloadavg(),
            "kernel": platform.release(), "python": platform.python_version(),
            "versions": versions}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="App tier HTTP throughput: `tierlake serve app` vs a minimal Starlette + "
        "raw-driver anchor (bench/anchor_app.py), driven by wrk, same run, same data.",
        epilog="Example: .venv/bin/python bench/http_bench.py --backends sqlite,mariadb")
    p.add_argument("--backends", default="sqlite,mariadb",
                   help="comma-separated: sqlite, mariadb [default: %(default)s]")
    p.add_argument("--endpoints", default="catalogue,checkout",
                   help="comma-separated: catalogue, checkout [default: %(default)s]")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per measurement [default: 10; 2 with --quick]")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of unrecorded warm-up per server and endpoint "
                        "[default: 2; 1 with --quick]")
    p.add_argument("--connections", type=int, default=32,
                   help="concurrent HTTP connections (wrk -c) [default: %(default)s]")
    p.add_argument("--threads", type=int, default=1,
                   help="wrk threads; it shares the cores with the server [default: %(default)s]")
    p.add_argument("--rounds", type=int, default=1,
                   help="measurements per server and endpoint, order alternating; the table "
                        "shows medians [default: %(default)s]")
    p.add_argument("--products", type=int, default=240, help="[default: %(default)s]")
    p.add_argument("--categories", type=int, default=12, help="[default: %(default)s]")
    p.add_argument("--page-size", type=int, default=24, help="[default: %(default)s]")
    p.add_argument("--token-rate", type=int, default=2500,
                   help="customers made per second of checkout measurement (an upper bound of "
                        "the expected req/s; a run that runs out stops early and says so) "
                        "[default: %(default)s]")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for `tierlake serve app` only, e.g. "
                        "TIERLAKE_LOG_LEVEL=WARNING (repeatable)")
    p.add_argument("--cache", choices=("memory", "redis", "off"), default="memory",
                   help="the app tier's cache: in process (the default setting), in a Redis "
                        "started for the run (TIERLAKE_CACHE_URL), or off "
                        "(TIERLAKE_CACHE__ENABLED=false) [default: %(default)s]")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "http.json",
                   help="machine-readable results [default: bench/results/http.json]")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s measurements, 1 s warm-up, fewer customers")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    for b in args.backends:
        if b not in ("sqlite", "mariadb"):
            p.error(f"unknown backend {b!r}: use sqlite and/or mariadb")
    for e in args.endpoints:
        if e not in ("catalogue", "checkout"):
            p.error(f"unknown endpoint {e!r}: use catalogue and/or checkout")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 120:
        p.error("--duration must be in (0, 600] and --warmup in [0, 120]")
    if args.threads < 1 or args.connections < args.threads:
        p.error("need --threads >= 1 and --connections >= --threads")
    for kv in args.app_env:
        if "=" not in kv or not kv.startswith("TIERLAKE_"):
            p.error(f"--app-env takes TIERLAKE_KEY=VALUE, not {kv!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return 2
    opts = Options(duration=args.duration, warmup=args.warmup, connections=args.connections,
                   threads=args.threads, rounds=args.rounds,
                   pages=-(-args.products // args.page_size), page_size=args.page_size,
                   products=args.products, categories=args.categories,
                   token_rate=args.token_rate if not args.quick else min(args.token_rate, 2000),
                   endpoints=args.endpoints)
    app_env = dict(kv.split("=", 1) for kv in args.app_env)
    started = time.monotonic()
    with ExitStack() as cache_stack:
        if args.cache == "off":
            app_env.setdefault("TIERLAKE_CACHE__ENABLED", "false")
        elif args.cache == "redis":
            from servers import RedisServer

            app_env.setdefault("TIERLAKE_CACHE_URL", cache_stack.enter_context(RedisServer()).url)
        command = " ".join(sys.argv[1:] if argv is None else argv)
        return _run(args, opts, app_env, started, command)


def _run(args: argparse.Namespace, opts: Options, app_env: dict[str, str], started: float,
         command: str) -> int:

    def say(msg: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s {msg}", flush=True)

    import logging

    import structlog

    # quiet build_store's migration log lines
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results: dict[str, Any] = {
        "command": "bench/http_bench.py " + command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(), "options": asdict(opts), "app_env": app_env, "cache": args.cache,
        "backends": {},
    }
    say(f"machine: {results['machine']['nproc']} cores, {results['machine']['cpu_model']}; "
        f"wrk -t{opts.threads} -c{opts.connections}, {opts.duration:g} s per measurement, "
        f"{opts.warmup:g} s warm-up, {opts.rounds} round(s); app cache {args.cache}; load average "
        f"{results['machine']['loadavg_at_start'][0]:.2f} (other processes share the cores)")
    logdir = args.out.parent / "logs"  # servers' output of the last run only
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True, exist_ok=True)
    failed = False
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"tierlake-httpbench-{backend}-") as tmp:
            workdir = Path(tmp)
            try:
                if backend == "sqlite":
                    urls = {t: f"sqlite:///{workdir / f'{t}.db'}" for t in TARGETS}
                    results["backends"][backend] = bench_backend(
                        backend, urls, opts, workdir, logdir, app_env, say)
                else:
                    from servers import mariadb_server

                    with mariadb_server() as server:
                        urls = {t: server.create_database(f"bench_{t}") for t in TARGETS}
                        import pymysql

                        with pymysql.connect(unix_socket=str(server.socket), user="root") as c, \
                                c.cursor() as cur:
                            cur.execute("SELECT VERSION()")
                            version = cur.fetchone()[0]
                        say(f"[mariadb] server {version} up in {server.startup_seconds:.1f} s "
                            "(tests/servers.py: buffer pool 64M, flush-log-at-trx-commit=0)")
                        results["backends"][backend] = bench_backend(
                            backend, urls, opts, workdir, logdir, app_env, say,
                            db_pid=server.proc.pid)
                        results["backends"][backend]["server_version"] = version
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failed = True
                say(f"[{backend}] FAILED: {type(exc).__name__}: {exc}")
                results["backends"][backend] = {"error": f"{type(exc).__name__}: {exc}"}
    ok_backends = {k: v for k, v in results["backends"].items() if "error" not in v}
    rows = table({"backends": ok_backends})
    results["table"] = rows
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(rows))
    print("\nratio = tierlake req/s / anchor req/s (1.00 = as fast as the anchor); CPU ms/req = "
          "CPU time of the app server process (+ the MariaDB server) per request; medians of "
          f"{opts.rounds} round(s).")
    print(f"Results: {args.out}  ({results['elapsed_s']:.0f} s)")
    checks_ok = all(r["check"] for r in rows)
    if not checks_ok:
        print("WARNING: a correctness check failed (see the check column and the JSON)")
    return 1 if failed or not checks_ok else 0


if __name__ == "__main__":
    sys.exit(main())
