"""BI dashboards: build time of every dashboard on a big lake, cold and warm, against plain
DuckDB on the same Arrow tables (the anchor).

The lake: a synthetic SQLite store of ``--lines`` order lines and ``--events`` click events
(``bench/pipeline_data.py``, via ``jobs_bench.prepare_lake``), extracted by tierlake's
extract, every job of ``tierlake.analytics.jobs.JOBS`` run on DuckDB into ``curated/`` as
the pipeline does. ``--lake DIR`` keeps it there and reuses it on the next run.

Then, per dashboard (its default filters: the last ``default_days`` days of the data) and
per role (admin; analyst, whose identity columns are masked):

* **cold**: the engine's result cache cleared before each build (every query runs); the
  curated tables and the principals' secured copies are already in memory: both are made
  once per Delta version, and what that costs after a pipeline run (read the tables, secure
  them for admin and analyst, build every dashboard once) is reported on its own line;
* **warm**: the same build again (an unchanged lake: served from the cache);
* **anchor**: the dashboard's same SQL (the visuals shown, and each kpi's previous period)
  on plain DuckDB connections holding the raw Arrow tables behind views with the same date
  filter, made before the clock starts: only the queries are timed (no security, no
  connection, no cache, no figures, no JSON).

``--rounds`` builds per measurement; p50 and p95 in milliseconds. Results:
``bench/results/bi.json``. The command for 10M lines::

    .venv/bin/python bench/bi_bench.py --lines 10000000 --lake /tmp/bi-lake-10m
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def build_lake(work: Path, lines: int, events: int) -> dict[str, Any]:
    """The synthetic store, extracted, and every job run into ``work/lake/curated``."""
    from jobs_bench import prepare_lake
    from tierlake.analytics.engines import create_engine
    from tierlake.analytics.jobs import JOBS
    from tierlake.analytics.runner import run_jobs
    from tierlake.pipeline.run import job_inputs

    lake, prep = prepare_lake(work, lines, events)
    began = time.perf_counter()
    engine = create_engine("duckdb")
    try:
        inputs = job_inputs(lake, {n for job in JOBS for n in job.inputs})
        run_jobs(engine, inputs, progress=False,
                 write=lambda name, table: lake.write("curated", name, table, mode="overwrite"))
    finally:
        engine.close()
    prep["jobs_seconds"] = round(time.perf_counter() - began, 1)
    print(f"jobs on duckdb: {prep['jobs_seconds']} s", flush=True)
    return prep


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1)}


def _anchor(engine: Any, dashboard: Any, filters: Any) -> float:
    """The dashboard's queries on plain DuckDB over the raw Arrow tables (ms); the
    connections and their views are made before the clock starts."""
    import duckdb

    from tierlake.bi import row_security
    from tierlake.bi.catalog import TABLES

    visuals = engine.shown_visuals(dashboard, filters)
    names = sorted({t for v in visuals for t in v.tables})
    raw = {n: engine.tables.table(n, engine.tables.versions({n})[n]) for n in names}
    connections = []
    for wanted in (filters, filters.previous_period()):
        con = duckdb.connect()
        for name, table in raw.items():
            con.register(f"raw_{name}", table)
            where = row_security.filter_conditions(TABLES[name], table.schema, wanted, dashboard)
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "raw_{name}"{clause}')
        connections.append(con)
    began = time.perf_counter()
    for i, con in enumerate(connections):
        for visual in visuals:
            if i == 0 or (visual.kind == "kpi" and visual.compare):
                con.execute(visual.query).fetchall()
    elapsed = (time.perf_counter() - began) * 1000
    for con in connections:
        con.close()
    return elapsed


def measure(lake_url: str, rounds: int) -> dict[str, Any]:
    from tierlake.bi.engine import BiEngine
    from tierlake.bi.model import Principal

    principals = [Principal(email="admin@bench", role="admin"),
                  Principal(email="analyst@bench", role="analyst")]
    engine = BiEngine(lake_url, cache_entries=4096)
    began = time.perf_counter()
    for principal in principals:  # what a new Delta version costs: read, secure, build
        for dashboard in engine.dashboards():
            engine.run_dashboard(dashboard, engine.parse_filters(dashboard, {}), principal)
    load_s = time.perf_counter() - began
    rows = engine.tables.table("sales_lines",
                               engine.tables.versions({"sales_lines"})["sales_lines"])
    print(f"new version: tables read, secured for admin and analyst, every dashboard built "
          f"once for each: {load_s:.1f} s ({rows.num_rows:,} sales lines)", flush=True)
    results: dict[str, Any] = {"load_seconds": round(load_s, 2), "sales_lines": rows.num_rows,
                               "dashboards": {}}
    print(f"\n{'dashboard':<10} {'role':<8} {'cold p50':>9} {'cold p95':>9} {'warm p50':>9} "
          f"{'warm p95':>9} {'anchor p50':>11} {'anchor p95':>11} {'cold/anchor':>12}")
    for dashboard in engine.dashboards():
        filters = engine.parse_filters(dashboard, {})
        anchor = [_anchor(engine, dashboard, filters) for _ in range(rounds)]
        for principal in principals:
            cold, warm = [], []
            for _ in range(rounds):
                engine.cache_clear()
                began = time.perf_counter()
                engine.run_dashboard(dashboard, filters, principal)
                cold.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                engine.run_dashboard(dashboard, filters, principal)
                warm.append((time.perf_counter() - began) * 1000)
            row = {"cold": _percentiles(cold), "warm": _percentiles(warm),
                   "anchor": _percentiles(anchor), "visuals": len(engine.shown_visuals(
                       dashboard, filters)), "days": filters.days}
            row["ratio_cold_p95"] = round(row["cold"]["p95"] / row["anchor"]["p95"], 2)
            results["dashboards"][f"{dashboard.id}/{principal.role}"] = row
            print(f"{dashboard.id:<10} {principal.role:<8} {row['cold']['p50']:>9} "
                  f"{row['cold']['p95']:>9} {row['warm']['p50']:>9} {row['warm']['p95']:>9} "
                  f"{row['anchor']['p50']:>11} {row['anchor']['p95']:>11} "
                  f"{row['ratio_cold_p95']:>11}x", flush=True)
    engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="order lines in the store")
    parser.add_argument("--events", type=int, default=1_000_000, help="click events")
    parser.add_argument("--lake", default="", help="keep (and reuse) the lake's folder here")
    parser.add_argument("--rounds", type=int, default=20, help="builds per measurement")
    parser.add_argument("--output", default=str(RESULTS / "bi.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bi-bench-") as tmp:
        work = Path(args.lake) if args.lake else Path(tmp)
        prep: dict[str, Any] = {"reused": True}
        if not (work / "lake" / "curated" / "sales_lines" / "_delta_log").is_dir():
            work.mkdir(parents=True, exist_ok=True)
            prep = build_lake(work, args.lines, args.events)
        else:
            print(f"reusing the lake in {work}", flush=True)
        results = measure(str(work / "lake"), args.rounds)
    out = {"machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()},
           "lines": args.lines, "prepare": prep, "rounds": args.rounds, **results}
    Path(args.output).write_text(json.dumps(out, indent=2))
    worst = max(r["cold"]["p95"] for r in results["dashboards"].values())
    print(f"\nworst cold p95: {worst} ms (aim < 300 ms); results: {args.output}")


if __name__ == "__main__":
    main()
