"""Extract throughput and memory: tierlake's extract against pandas and dlt on the same DB.

For each backend a synthetic store (``bench/pipeline_data.py``) with ``--rows`` order lines
is built once; then each method runs in its OWN subprocess (a fresh interpreter):

* ``tierlake``: the full extract (``tierlake.lake.extract.extract``) of every table into a
  fresh local lake;
* ``tierlake-table``: the same, ``order_lines`` only (like for like with the anchors);
* ``pandas``: ``pandas.read_sql("SELECT * FROM order_lines", engine)`` + ``to_parquet``;
* ``dlt``: dlt's ``sql_database`` source (pyarrow backend, ``order_lines`` only) into the
  filesystem destination as Parquet;
* ``incremental-recent``: the newest 1% of order lines get ``updated_at = now`` (how a store
  changes); tierlake's next run on the lake of its full run; then ``incremental-spread``:
  every 100th line (the worst case: every file of the table holds a changed row). Both
  with the default ``compact_ratio`` (0.1): the changes are logged, not merged;
* ``scan-logged``: DuckDB reads ``order_lines`` as the jobs do (base + log applied) and
  sums it; ``compact``: ``tierlake pipeline compact`` merges the log; ``scan-merged``: the
  same scan after it; ``incremental-merged``: every 100th line again, merged by the run
  itself (``compact_ratio=0``, copy-on-write: what a run cost before merge-on-read);
* ``tierlake`` again on a ``--small-rows`` SQLite store, for memory flatness.

Wall time is measured inside the child around the work only (imports and engine creation
before, row counting after). Peak memory: ``ru_maxrss`` of the child from ``os.wait4``
(the per-child form of ``getrusage(RUSAGE_CHILDREN)``; it is the largest single process
of the child's tree, the child or a reaped grandchild), and the child's own sampled peak of
the SUM of RSS over its process tree (tierlake reads SQLite in a helper process).
Results: ``bench/results/extract.json``. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CHILD_TIMEOUT = 1800


# -- child side ------------------------------------------------------------------------------

def _tree_rss_kb(pid: int) -> int:
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


class TreeSampler:
    """Peak of the summed RSS of this process and its descendants, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))
            self._stop.wait(0.05)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_tierlake(url: str, out: Path, only: str | None = None,
                   compact_ratio: float = 0.1) -> dict[str, Any]:
    from tierlake.config import ExtractConfig
    from tierlake.lake.extract import extract
    from tierlake.lake.sources.database import DatabaseSource
    from tierlake.lake.store import Lake

    exclude = tuple(ExtractConfig().exclude)
    if only:
        exclude += tuple(t for t in DatabaseSource(url).list_tables() if t != only)
    lake = Lake(str(out))
    config = ExtractConfig(lookback_seconds=300, batch_rows=100_000, parallel_reads=2,
                           exclude=list(exclude), compact_ratio=compact_ratio)
    began = time.perf_counter()
    info = extract(url, lake, config, progress=False)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": info.table("order_lines").rows, "total_rows": info.rows}


def child_tierlake_table(url: str, out: Path) -> dict[str, Any]:
    return child_tierlake(url, out, only="order_lines")


def child_incremental_merged(url: str, out: Path) -> dict[str, Any]:
    return child_tierlake(url, out, compact_ratio=0.0)


def child_compact(url: str, out: Path) -> dict[str, Any]:
    from tierlake.lake.store import Lake
    from tierlake.pipeline.run import compact_lake

    lake = Lake(str(out))
    began = time.perf_counter()
    done = compact_lake(lake)
    seconds = time.perf_counter() - began
    rows = sum(c.merged for c in done)
    return {"seconds": seconds, "rows": rows, "total_rows": rows}


def child_scan(url: str, out: Path) -> dict[str, Any]:
    """order_lines as the jobs read it (DuckDB; the log applied if any), summed."""
    import ibis

    from tierlake.analytics.engines.duckdb import DuckDBEngine
    from tierlake.analytics.jobs import JOBS
    from tierlake.analytics.runner import _load
    from tierlake.lake.store import Lake
    from tierlake.pipeline.run import job_inputs

    lake = Lake(str(out))
    with DuckDBEngine() as engine:
        began = time.perf_counter()
        inputs = job_inputs(lake, {"order_lines"})
        lines = _load(engine, JOBS[0], "order_lines", inputs)
        result = engine.execute(lines.aggregate(n=ibis._.count(),
                                                total=ibis._.line_total_cents.sum()))
        seconds = time.perf_counter() - began
    rows = result["n"][0].as_py()
    return {"seconds": seconds, "rows": rows, "total_rows": rows,
            "logged": type(inputs["order_lines"]).__name__ == "LoggedTable"}


def child_pandas(url: str, out: Path) -> dict[str, Any]:
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(url)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    df = pd.read_sql("SELECT * FROM order_lines", engine)
    df.to_parquet(out / "order_lines.parquet")
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": len(df), "total_rows": len(df)}


def child_dlt(url: str, out: Path) -> dict[str, Any]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    import pyarrow.dataset as ds
    from dlt.sources.sql_database import sql_database

    pipelines_dir = out / "_pipelines"
    data_dir = out / "data"
    pipeline = dlt.pipeline(pipeline_name="extract_bench", pipelines_dir=str(pipelines_dir),
                            destination=dlt.destinations.filesystem(bucket_url=data_dir.as_uri()),
                            dataset_name="bench")
    began = time.perf_counter()
    source = sql_database(credentials=url, table_names=["order_lines"], backend="pyarrow")
    pipeline.run(source, loader_file_format="parquet")
    seconds = time.perf_counter() - began
    files = [str(p) for p in (data_dir / "bench" / "order_lines").rglob("*.parquet")]
    rows = ds.dataset(files, format="parquet").count_rows() if files else 0
    return {"seconds": seconds, "rows": rows, "total_rows": rows}


CHILDREN = {"tierlake": child_tierlake, "tierlake-table": child_tierlake_table,
            "incremental-recent": child_tierlake, "incremental-spread": child_tierlake,
            "incremental-merged": child_incremental_merged, "compact": child_compact,
            "scan-logged": child_scan, "scan-merged": child_scan,
            "pandas": child_pandas, "dlt": child_dlt}


def run_child(method: str, url: str, out: Path) -> None:
    with TreeSampler() as sampler:
        result = CHILDREN[method](url, out)
    result["tree_peak_mb"] = round(sampler.peak_kb / 1024, 1)
    print("RESULT " + json.dumps(result), flush=True)


# -- parent side -----------------------------------------------------------------------------

def measure(method: str, url: str, out: Path, log: Path) -> dict[str, Any]:
    """Run one method in a fresh subprocess; its timing, rows and peak memory."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--url", url,
           "--out", str(out)]
    env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false", PYTHONPATH=str(ROOT / "src"))
    # Linux carries the forking process's RSS high-water mark into the child's ru_maxrss,
    # so it is a floor under every child's figure: this process is kept small, and says how big.
    floor_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        timer = threading.Timer(CHILD_TIMEOUT, proc.kill)
        timer.start()
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        return {"method": method, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    result = json.loads(line[len("RESULT "):])
    result.update(method=method, peak_mb=round(usage.ru_maxrss / 1024, 1), floor_mb=floor_mb,
                  rows_per_s=round(result["rows"] / result["seconds"]),
                  total_rows_per_s=round(result["total_rows"] / result["seconds"]))
    print(f"  {method:<18} {result['seconds']:8.2f} s  {result['rows_per_s']:>10,} rows/s  "
          f"peak {result['peak_mb']:7.1f} MB (tree {result['tree_peak_mb']:.1f} MB)", flush=True)
    return result


def database(backend: str, stack: ExitStack, work: Path, name: str,
             buffer_pool: str = "4G") -> str:
    if backend == "sqlite":
        return f"sqlite:///{work / (name + '.db')}"
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import mariadb_server  # type: ignore[import-not-found]

    if not hasattr(database, "server"):
        database.server = stack.enter_context(  # type: ignore[attr-defined]
            mariadb_server(buffer_pool))
    return database.server.create_database(name)  # type: ignore[attr-defined]


def build(url: str, rows: int) -> float:
    """Build the store in a subprocess, so this process stays small (see ``measure``)."""
    began = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "pipeline_data.py"), "--lines", str(rows),
                    "--url", url], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    return time.perf_counter() - began


def touch(url: str, fraction: float, shape: str) -> int:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pipeline_data import "
            "touch_order_lines as t; print(t(sys.argv[2], float(sys.argv[3]), sys.argv[4]))")
    out = subprocess.run([sys.executable, "-c", code, str(HERE), url, str(fraction), shape],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    return int(out.stdout.split()[-1])


def bench_backend(backend: str, rows: int, methods: list[str], stack: ExitStack,
                  work: Path, log: Path, buffer_pool: str = "4G") -> dict[str, Any]:
    url = database(backend, stack, work, f"store_{rows}", buffer_pool)
    build_s = build(url, rows)
    print(f"{backend}: built {rows:,} order lines in {build_s:.1f} s", flush=True)
    out: dict[str, Any] = {"rows": rows, "build_seconds": round(build_s, 1), "methods": {}}
    for method in methods:
        target = work / f"{backend}-{method}"
        shutil.rmtree(target, ignore_errors=True)
        out["methods"][method] = measure(method, url, target, log)
        if method != "tierlake":
            shutil.rmtree(target, ignore_errors=True)  # keep disk use bounded
    if "tierlake" in methods and "error" not in out["methods"]["tierlake"]:
        lake = work / f"{backend}-tierlake"
        for step in ("recent", "spread", "scan-logged", "compact", "scan-merged", "merged"):
            if step in ("recent", "spread", "merged"):
                shape = "spread" if step == "merged" else step
                changed = touch(url, 0.01, shape)
                print(f"  updated_at = now on {changed:,} order lines (1%, {shape})", flush=True)
                out["methods"][f"incremental-{step}"] = measure(f"incremental-{step}", url,
                                                                lake, log)
                out["methods"][f"incremental-{step}"]["changed_rows"] = changed
            else:
                out["methods"][step] = measure(step, url, lake, log)
    shutil.rmtree(work / f"{backend}-tierlake", ignore_errors=True)
    if backend == "sqlite":
        Path(url.split("sqlite:///", 1)[1]).unlink(missing_ok=True)
    return out


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    if "error" in a or "error" in b or not b.get(key):
        return "-"
    return f"{a[key] / b[key]:.2f}"


def report(results: dict[str, Any]) -> None:
    print("\nbackend  method             rows        seconds   rows/s     all rows/s  peak MB"
          "  tree MB  tierlake rows/s ÷ this   this tree peak ÷ tierlake's")
    for backend, res in results["backends"].items():
        ours = res["methods"].get("tierlake", {"error": "not run"})
        for method, m in res["methods"].items():
            if "error" in m:
                print(f"{backend:<8} {method:<18} ERROR {m['error'][:300]}")
                continue
            print(f"{backend:<8} {method:<18} {m['rows']:>10,}  {m['seconds']:8.2f}  "
                  f"{m['rows_per_s']:>10,} {m['total_rows_per_s']:>10,}  {m['peak_mb']:8.1f} "
                  f"{m['tree_peak_mb']:8.1f}  {ratio(ours, m, 'rows_per_s'):>10}   "
                  f"{ratio(m, ours, 'tree_peak_mb'):>10}")
        table = res["methods"].get("tierlake-table", {"error": "not run"})
        for anchor in ("pandas", "dlt"):
            if anchor in res["methods"]:
                print(f"{backend:<8} order_lines alone: tierlake ÷ {anchor} rows/s = "
                      f"{ratio(table, res['methods'][anchor], 'rows_per_s')}")
        for step in ("incremental-recent", "incremental-spread", "compact",
                     "incremental-merged"):
            inc = res["methods"].get(step)
            if inc and "error" not in inc and "error" not in ours:
                print(f"{backend:<8} {step} / full time = "
                      f"{inc['seconds'] / ours['seconds'] * 100:.1f}%")
        scans = [res["methods"].get(f"scan-{k}") for k in ("logged", "merged")]
        if all(s and "error" not in s for s in scans):
            print(f"{backend:<8} scan of order_lines with the log ÷ merged = "
                  f"{scans[0]['seconds'] / scans[1]['seconds']:.2f}")  # type: ignore[index]
    flat = results.get("flatness")
    if flat:
        print(f"memory flatness (sqlite, tierlake): {flat['small_rows']:,} rows "
              f"{flat['small_peak_mb']} MB (tree {flat['small_tree_mb']}) vs "
              f"{flat['large_rows']:,} rows {flat['large_peak_mb']} MB "
              f"(tree {flat['large_tree_mb']}): growth {flat['growth_pct']}% "
              f"(tree {flat['tree_growth_pct']}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="order lines per store")
    parser.add_argument("--backends", default="sqlite,mariadb", help="sqlite,mariadb")
    parser.add_argument("--mariadb-rows", type=int, default=0,
                        help="order lines for MariaDB (default: --rows)")
    parser.add_argument("--methods", default="tierlake,tierlake-table,pandas,dlt",
                        help="subset of tierlake,tierlake-table,pandas,dlt (the incremental "
                        "runs follow tierlake)")
    parser.add_argument("--mariadb-buffer-pool", default="4G",
                        help="MariaDB's innodb_buffer_pool_size: big enough for the store, as "
                        "on RDS (3/4 of the instance's memory); the test servers use 64M")
    parser.add_argument("--small-rows", type=int, default=1_000_000,
                        help="SQLite store for memory flatness (0: skip)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temp)")
    parser.add_argument("--output", default=str(RESULTS / "extract.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.url, Path(args.out))
        return
    sys.path.insert(0, str(HERE))
    RESULTS.mkdir(exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "rows": args.rows, "mariadb_buffer_pool": args.mariadb_buffer_pool, "backends": {}}
    with ExitStack() as stack:
        work = Path(args.workdir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="extract-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        log = RESULTS / "extract-children.log"
        log.write_text("")
        for backend in [b for b in args.backends.split(",") if b]:
            rows = args.mariadb_rows if backend == "mariadb" and args.mariadb_rows else args.rows
            results["backends"][backend] = bench_backend(backend, rows, methods, stack, work, log,
                                                         args.mariadb_buffer_pool)
            Path(args.output).write_text(json.dumps(results, indent=2))
        large = results["backends"].get("sqlite", {}).get("methods", {}).get("tierlake")
        if args.small_rows and large and "error" not in large:
            url = f"sqlite:///{work / 'small.db'}"
            build(url, args.small_rows)
            print(f"sqlite: memory flatness store, {args.small_rows:,} lines", flush=True)
            small = measure("tierlake", url, work / "small-lake", log)
            if "error" not in small:
                results["flatness"] = {
                    "small_rows": args.small_rows, "large_rows": args.rows,
                    "small_peak_mb": small["peak_mb"], "large_peak_mb": large["peak_mb"],
                    "small_tree_mb": small["tree_peak_mb"],
                    "large_tree_mb": large["tree_peak_mb"],
                    "small_rows_per_s": small["rows_per_s"],
                    "growth_pct": round((large["peak_mb"] / small["peak_mb"] - 1) * 100, 1),
                    "tree_growth_pct": round(
                        (large["tree_peak_mb"] / small["tree_peak_mb"] - 1) * 100, 1)}
    Path(args.output).write_text(json.dumps(results, indent=2))
    report(results)
    print(f"\nresults: {args.output}")


if __name__ == "__main__":
    main()
