"""Failover: time from SIGKILL of the primary to the first successful write, and writes lost.

One :class:`DBCluster` (two MariaDB 10.11 servers, semi-synchronous GTID replication, the
writer endpoint, the monitor checking every ``--check-interval`` s) on its own event loop in a
thread, as the control plane would run it. A :class:`WriteStream` inserts rows with unique ids
through the writer endpoint, one kept connection reopened after an error, each failed
statement retried with the same id (idempotent). Each run:

1. wait until the standby replicates (after the first run: the killed server has rejoined);
2. SIGKILL the primary's ``mariadbd`` while writes flow;
3. measure the time from the kill to the first acknowledged write, and the failed attempts;
4. after ``--runs`` runs, a planned failover (``DBCluster.failover``) under a stream of
   writes that take a connection per write: its failed writes and how long writes were held;
5. every acknowledged id is looked for on the primary at the end: lost and duplicated ids.

RDS documents 60-120 s for a Multi-AZ DB instance failover and under 35 s for a Multi-AZ DB
cluster. Prints a summary and writes ``bench/results/failover.json``. Only 127.0.0.1 is
contacted; the servers die with the bench.

    .venv/bin/python bench/failover_bench.py             # 7 runs, about a minute
    .venv/bin/python bench/failover_bench.py --runs 1    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tierlake.data.cluster import DBCluster
from tierlake.data.cluster.probe import WriteStream, read_request_ids

T = TypeVar("T")
WAIT = 120.0
RESULTS = Path(__file__).parent / "results" / "failover.json"


class _Running:
    def __init__(self, cluster: DBCluster) -> None:
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def status(self) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            return self.cluster.status()
        return self.call(get())


def _wait(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"failover_bench: not within {WAIT:.0f}s: {what}")
        time.sleep(0.05)


def _standby_replicating(running: _Running) -> bool:
    st = running.status()
    return any(m["Role"] == "standby" and m["DBInstanceStatus"] == "available"
               and (m["Replication"] or {}).get("sql_running") == "Yes"
               for m in st["DBClusterMembers"])


def _lost_and_duplicated(port: int, acknowledged: list[int]) -> tuple[int, int]:
    ids = read_request_ids("127.0.0.1", port)
    duplicated = sum(1 for n in collections.Counter(ids).values() if n > 1)
    return len(set(acknowledged) - set(ids)), duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--check-interval", type=float, default=1.0)
    parser.add_argument("--failure-threshold", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin:" + os.environ["PATH"]) is None:
        sys.exit("failover_bench: mariadbd not found; apt-get install -y mariadb-server")
    directory = Path(tempfile.mkdtemp(prefix="tierlake-failover-bench-"))
    running = _Running(DBCluster(directory / "db-cluster", check_interval=args.check_interval,
                                 failure_threshold=args.failure_threshold))
    try:
        running.call(running.cluster.start())
        result = _measure(running, args.runs)
    finally:
        running.call(running.cluster.stop())
        shutil.rmtree(directory, ignore_errors=True)
    result["check_interval_s"] = args.check_interval
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    kills = result["kill_to_first_write_s"]
    print(f"unplanned (SIGKILL primary), {len(kills)} runs: kill -> first successful write "
          f"p50 {statistics.median(kills):.2f} s, min {min(kills):.2f}, max {max(kills):.2f}; "
          f"failed attempts {result['failed_attempts_unplanned']}; acknowledged writes "
          f"{result['acknowledged_unplanned']}, lost {result['lost']}, duplicated "
          f"{result['duplicated']}")
    print(f"planned failover: writes held {result['planned_switch_s']:.2f} s, failed writes "
          f"{result['failed_planned']}, acknowledged {result['acknowledged_planned']}")
    print(f"(RDS: 60-120 s Multi-AZ DB instance, < 35 s Multi-AZ DB cluster) -> {RESULTS}")


def _measure(running: _Running, runs: int) -> dict[str, Any]:
    cluster = running.cluster
    stream = WriteStream("127.0.0.1", cluster.writer.port)
    stream.create_table()
    stream.start()
    kills: list[float] = []
    for run in range(runs):
        _wait("the standby replicates", lambda: _standby_replicating(running))
        count = stream.count
        _wait("writes flow", lambda c=count: stream.count >= c + 20)
        pid = cluster.primary.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = stream.mark()
        _wait("writes resume",
              lambda k=killed: k in stream.info.first_ack_after)
        kills.append(stream.info.first_ack_after[killed])
        print(f"run {run + 1}: kill -> first successful write "
              f"{stream.info.first_ack_after[killed]:.2f} s", flush=True)
    info = stream.stop()
    lost, duplicated = _lost_and_duplicated(cluster.writer.port, info.acknowledged)

    _wait("the standby replicates", lambda: _standby_replicating(running))
    planned = WriteStream("127.0.0.1", cluster.writer.port, connection_per_write=True)
    planned.start()
    _wait("writes flow", lambda: planned.count >= 20)
    switch = running.call(cluster.failover())
    count = planned.count
    _wait("writes after the switch", lambda: planned.count >= count + 20)
    planned_info = planned.stop()
    lost_p, dup_p = _lost_and_duplicated(cluster.writer.port,
                                         info.acknowledged + planned_info.acknowledged)
    return {"runs": runs, "kill_to_first_write_s": [round(k, 3) for k in kills],
            "kill_to_first_write_p50_s": round(statistics.median(kills), 3),
            "failed_attempts_unplanned": info.failed_attempts,
            "acknowledged_unplanned": len(info.acknowledged), "lost": lost + lost_p,
            "duplicated": duplicated + dup_p, "planned_switch_s": switch["seconds"],
            "failed_planned": planned_info.failed_attempts,
            "acknowledged_planned": len(planned_info.acknowledged)}


if __name__ == "__main__":
    main()
