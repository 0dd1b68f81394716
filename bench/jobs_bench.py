"""Analytics jobs: the full job set on DuckDB (ours) against Spark local (the anchor).

A lake is prepared once: a synthetic SQLite store with ``--lines`` order lines
(``bench/pipeline_data.py``) extracted with tierlake's extract into ``current/``, plus
``--events`` synthetic click events written to ``raw/clickstream/events`` (partitioned by
``dt``, the columns of the clickstream source's ``LAKE_SCHEMA``). Then every job of
``tierlake.analytics.jobs.JOBS`` runs through ``run_jobs`` on each engine, writing its
curated table to the lake as the pipeline does. Spark's session start (``create_engine``)
is timed separately from the jobs. ``--rounds`` alternates the engines (DuckDB first).
Results: ``bench/results/jobs.json``.
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


def prepare_lake(work: Path, lines: int, events: int) -> tuple[Any, dict[str, Any]]:
    from pipeline_data import build_store, clickstream_table
    from tierlake.lake.extract import extract
    from tierlake.lake.store import Lake

    url = f"sqlite:///{work / 'store.db'}"
    began = time.perf_counter()
    counts = build_store(url, lines)
    built = time.perf_counter() - began
    lake = Lake(str(work / "lake"))
    info = extract(url, lake, progress=False)
    clicks = clickstream_table(events, customers=counts["customers"], orders=counts["orders"])
    lake.write("raw", "clickstream/events", clicks, partition_by=["dt"])
    (work / "store.db").unlink()
    prep = {"build_seconds": round(built, 1), "extract_seconds": round(info.elapsed_seconds, 1),
            "rows": counts, "events": clicks.num_rows}
    print(f"lake ready: {counts['order_lines']:,} order lines, {counts['orders']:,} orders, "
          f"{clicks.num_rows:,} events (build {built:.1f} s, extract "
          f"{info.elapsed_seconds:.1f} s)", flush=True)
    return lake, prep


def run_engine(name: str, lake: Any, master: str) -> dict[str, Any]:
    from tierlake.analytics.engines import create_engine
    from tierlake.analytics.jobs import JOBS
    from tierlake.analytics.runner import run_jobs
    from tierlake.pipeline.run import job_inputs

    began = time.perf_counter()
    engine = create_engine(name, **({"master": master} if name == "spark" else {}))
    start_s = time.perf_counter() - began
    try:
        began = time.perf_counter()
        inputs = job_inputs(lake, {n for job in JOBS for n in job.inputs})
        infos = run_jobs(engine, inputs, progress=False,
                         write=lambda job, table: lake.write("curated", f"{name}/{job}", table,
                                                             mode="overwrite"))
        jobs_s = time.perf_counter() - began
    finally:
        engine.close()
    result = {"start_seconds": round(start_s, 2), "jobs_seconds": round(jobs_s, 2),
              "per_job": {i.name: i.seconds for i in infos},
              "result_rows": {i.name: i.rows for i in infos}}
    print(f"  {name:<7} start {start_s:6.2f} s   jobs {jobs_s:7.2f} s   "
          + "  ".join(f"{i.name}={i.seconds:.2f}" for i in infos), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="order lines in the store")
    parser.add_argument("--events", type=int, default=100_000, help="click events")
    parser.add_argument("--master", default="local[2]", help="Spark master")
    parser.add_argument("--rounds", type=int, default=1, help="runs per engine (alternating)")
    parser.add_argument("--output", default=str(RESULTS / "jobs.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as tmp:
        lake, prep = prepare_lake(Path(tmp), args.lines, args.events)
        runs: dict[str, list[dict[str, Any]]] = {"duckdb": [], "spark": []}
        for _ in range(args.rounds):
            for name in ("duckdb", "spark"):
                runs[name].append(run_engine(name, lake, args.master))
    duck = statistics.median(r["jobs_seconds"] for r in runs["duckdb"])
    spark = statistics.median(r["jobs_seconds"] for r in runs["spark"])
    spark_start = statistics.median(r["start_seconds"] for r in runs["spark"])
    duck_start = statistics.median(r["start_seconds"] for r in runs["duckdb"])
    same = runs["duckdb"][0]["result_rows"] == runs["spark"][0]["result_rows"]
    summary = {"duckdb_jobs_seconds": duck, "spark_jobs_seconds": spark,
               "duckdb_start_seconds": duck_start, "spark_start_seconds": spark_start,
               "ratio_jobs": round(spark / duck, 2),
               "ratio_with_start": round((spark + spark_start) / (duck + duck_start), 2),
               "same_result_row_counts": same}
    out = {"machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()},
           "lines": args.lines, "master": args.master, "prepare": prep, "runs": runs,
           "summary": summary}
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"\nengine   start s   jobs s (median of {args.rounds})\n"
          f"duckdb   {duck_start:7.2f}   {duck:7.2f}\n"
          f"spark    {spark_start:7.2f}   {spark:7.2f}   ({args.master})\n"
          f"Spark jobs / DuckDB jobs = {summary['ratio_jobs']}x; including engine start "
          f"{summary['ratio_with_start']}x; result row counts equal: {same}\n"
          f"results: {args.output}")


if __name__ == "__main__":
    main()
