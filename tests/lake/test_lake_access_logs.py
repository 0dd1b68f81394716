"""The access-log source: the load balancer's delivered ALB logs in the lake, each line once.

Files are written by the real writer (:class:`~tierlake.edge.lb.accesslog.AccessLogWriter`,
its clock pinned so each file's end time is chosen) and read by the real source.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tierlake.edge.lb.accesslog import AccessLogWriter
from tierlake.edge.lb.model import AccessLogEntry
from tierlake.lake import Lake
from tierlake.lake.errors import ExtractError
from tierlake.lake.extract import run_sources
from tierlake.lake.sources.accesslogs import TABLE, WINDOW_KEY, AccessLogsSource
from tierlake.lake.sources.delivered import Listing

LOOP = Path(__file__).parent / "lake_access_logs_loop.py"
DAY = datetime(2026, 11, 30, tzinfo=UTC)


def request(at: datetime, tag: str, *, dispatched: bool = True) -> AccessLogEntry:
    t = at.timestamp()
    return AccessLogEntry(
        type="http", time=t, elb="web-alb", client=("127.0.0.1", 50000),
        target=("127.0.0.1", 8001) if dispatched else None,
        request_processing_time=0.001 if dispatched else -1.0,
        target_processing_time=0.025 if dispatched else -1.0,
        response_processing_time=0.0 if dispatched else -1.0,
        elb_status_code=200 if dispatched else 503,
        target_status_code=200 if dispatched else None, received_bytes=100, sent_bytes=2000,
        request=f"GET http://localhost:8080/p?tag={tag} HTTP/1.1", user_agent="test",
        target_group="web-tg", trace_id=f"Root=1-{tag}", domain_name="localhost",
        matched_rule_priority="0", request_creation_time=t - 0.026,
        actions_executed=["forward"],
        targets_tried=[("127.0.0.1", 8001)] if dispatched else [],
        target_status_codes=[200] if dispatched else [])


def deliver(logs_dir: Path, at: datetime, *, tag: str, n: int = 3) -> Path:
    """One file whose period ends at ``at``, of ``n`` requests tagged ``<tag>-<i>``."""
    writer = AccessLogWriter(logs_dir, "web-alb", clock=at.timestamp)
    for i in range(n):
        writer.request_done(request(at - timedelta(seconds=n - i), f"{tag}-{i}"))
    writer.close()
    (path,) = writer.delivered
    return path


def ingest(logs_dir: Path, lake: Lake, **options: int) -> int:
    return run_sources([AccessLogsSource(logs_dir, **options)], lake).files_ingested


def delivered_lines(logs_dir: Path) -> int:
    return sum(len(gzip.decompress(p.read_bytes()).splitlines())
               for p in logs_dir.rglob("*.log.gz"))


def assert_each_line_once(logs_dir: Path, lake: Lake) -> pa.Table:
    rows = lake.read_arrow("raw", TABLE)
    assert rows.num_rows == delivered_lines(logs_dir)
    assert pc.count_distinct(rows["trace_id"]).as_py() == rows.num_rows, "a line twice"
    return rows


def test_files_are_loaded_once_across_runs_temp_files_never(tmp_path: Path,
                                                            lake: Lake) -> None:
    logs = tmp_path / "logs"
    for minute in range(3):
        deliver(logs, DAY + timedelta(hours=10, minutes=minute), n=4, tag=f"a{minute}")
    region = next(logs.rglob("local-1"))
    (region / ".web-alb.0123.log.gz.tmp").write_bytes(b"\x1f\x8b half a gzip")  # in progress
    assert ingest(logs, lake) == 3
    assert ingest(logs, lake) == 0
    deliver(logs, DAY + timedelta(hours=10, minutes=5), n=2, tag="b")
    assert ingest(logs, lake) == 1
    assert ingest(logs, lake) == 0
    rows = assert_each_line_once(logs, lake)
    assert rows.num_rows == 14
    assert lake.table("raw", TABLE).metadata().partition_columns == ["month"]
    assert set(rows["dt"].to_pylist()) == {"2026-11-30"}
    assert set(rows["load_balancer"].to_pylist()) == {"web-alb"}
    assert set(rows["target_group"].to_pylist()) == {"web-tg"}


def test_columns_are_typed_and_minus_one_is_null(tmp_path: Path, lake: Lake) -> None:
    logs = tmp_path / "logs"
    at = DAY + timedelta(hours=9)
    writer = AccessLogWriter(logs, "web-alb", clock=at.timestamp)
    writer.request_done(request(at, "ok"))
    writer.request_done(request(at, "no-target", dispatched=False))
    writer.close()
    assert ingest(logs, lake) == 1
    rows = {r["trace_id"]: r for r in lake.read_arrow("raw", TABLE).to_pylist()}
    schema = lake.read_arrow("raw", TABLE).schema
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("elb_status_code").type == pa.int64()
    assert schema.field("target_processing_time").type == pa.float64()
    ok, failed = rows["Root=1-ok"], rows["Root=1-no-target"]
    assert ok["time"] == at and ok["target_processing_time"] == 0.025
    assert (ok["request_verb"], ok["request_url"], ok["request_proto"]) == (
        "GET", "http://localhost:8080/p?tag=ok", "HTTP/1.1")
    assert (ok["client_ip"], ok["client_port"], ok["target_port"]) == ("127.0.0.1", 50000, 8001)
    assert ok["ssl_cipher"] is None and ok["matched_rule_priority"] == 0
    assert failed["elb_status_code"] == 503 and failed["target_status_code"] is None
    assert failed["target_ip"] is None and failed["target_port"] is None
    assert failed["request_processing_time"] is None  # ALB's -1
    assert failed["target_processing_time"] is None and failed["target_port_list"] is None


def test_files_delivered_late_are_loaded_once_and_the_window_stays_small(
        tmp_path: Path, lake: Lake) -> None:
    logs = tmp_path / "logs"
    for hour in (8, 9, 10):
        deliver(logs, DAY + timedelta(hours=hour), tag=f"h{hour}")
    assert ingest(logs, lake) == 3
    deliver(logs, DAY + timedelta(hours=9, minutes=30), tag="late1")  # older than the newest
    assert ingest(logs, lake) == 1
    deliver(logs, DAY + timedelta(hours=14), tag="h14")  # moves the window to 12:00
    deliver(logs, DAY + timedelta(hours=12, minutes=5), tag="late2")  # late, in the window
    assert ingest(logs, lake) == 2
    assert ingest(logs, lake) == 0
    # across midnight: the window reaches back into the day before
    deliver(logs, DAY + timedelta(days=1, minutes=30), tag="next")
    deliver(logs, DAY + timedelta(hours=23, minutes=50), tag="late3")
    assert ingest(logs, lake) == 2
    assert ingest(logs, lake) == 0
    assert_each_line_once(logs, lake)
    # the state names only the files of the last late_hours, not the whole day's
    window = json.loads(lake.table("raw", TABLE).history(1)[0][WINDOW_KEY])
    assert [w.split("_")[4] for w in window] == ["20261130T2350Z", "20261201T0030Z"]


def test_a_run_lists_only_the_recent_days_whatever_the_history(tmp_path: Path) -> None:
    listings = []
    for days in (2, 20):
        logs, lake = tmp_path / f"logs-{days}", Lake(str(tmp_path / f"lake-{days}"))
        start = DAY - timedelta(days=days)
        for d in range(days):
            deliver(logs, start + timedelta(days=d, hours=12), n=1, tag=f"d{d}")
        assert ingest(logs, lake) == days
        deliver(logs, DAY + timedelta(hours=12), n=1, tag="new")
        source = AccessLogsSource(logs)
        (info,) = run_sources([source], lake).tables
        assert info.files == 1
        listings.append(source.listing)
        assert_each_line_once(logs, lake)
    # the day of the window's beginning (the day before: 10:00-12:00) and the new day
    assert listings[0] == listings[1] == Listing(partitions=2, files=2, read=1)


def test_an_unreadable_file_commits_nothing_and_names_the_file(tmp_path: Path,
                                                               lake: Lake) -> None:
    logs = tmp_path / "logs"
    deliver(logs, DAY + timedelta(hours=10), tag="good")
    bad = deliver(logs, DAY + timedelta(hours=10, minutes=1), tag="bad")
    bad.write_bytes(gzip.compress(b"http not an access log line\n"))
    (info,) = AccessLogsSource(logs).extract(lake, run_id="r1")
    assert info.error and str(bad) in info.error and "move it out" in info.error
    assert lake.table("raw", TABLE) is None
    bad.write_bytes(b"not gzip at all")
    (info,) = AccessLogsSource(logs).extract(lake, run_id="r2")
    assert info.error and str(bad) in info.error
    bad.unlink()
    assert ingest(logs, lake) == 1


def wait_for_line(log: Path, word: str, count: int, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while log.read_text().count(word) < count:
        assert time.monotonic() < end, f"the loop never said {word!r}: {log.read_text()}"
        time.sleep(0.01)


@pytest.mark.timeout(300)
def test_ingestion_killed_at_random_points_loads_each_line_once(tmp_path: Path) -> None:
    """SIGKILL the ingesting process (one file per commit) at random moments while files
    keep arriving (late ones too); a clean run afterwards leaves every delivered line in the
    lake exactly once."""
    rng = random.Random(20261201)
    logs, lake_dir = tmp_path / "logs", tmp_path / "lake"
    log = tmp_path / "loop.log"
    log.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    minute = 0
    kills = 6
    with log.open("ab") as out:
        for kill in range(kills):
            for _ in range(8):
                minute += rng.randint(1, 20)
                late = rng.random() < 0.3
                at = DAY + timedelta(minutes=minute - (rng.randint(5, 90) if late else 0))
                deliver(logs, at, n=rng.randint(1, 5), tag=f"k{kill}-m{minute}-{late}")
            proc = subprocess.Popen([sys.executable, str(LOOP), str(logs), str(lake_dir)],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)
            wait_for_line(log, "ready", kill + 1)
            time.sleep(rng.uniform(0.0, 0.8))  # before, during or after its commits
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    lake = Lake(str(lake_dir))
    killed_with = lake.read_arrow("raw", TABLE).num_rows if lake.table("raw", TABLE) else 0
    assert killed_with > 0, "no kill landed after a commit: the test tested nothing"
    ingest(logs, lake)  # the clean run catches up what the kills left
    assert_each_line_once(logs, lake)


def test_extract_takes_the_access_logs_dir(tmp_path: Path, lake: Lake) -> None:
    """``extract(..., access_logs_dir=)``: the database and the access logs in one run."""
    from lake_helpers import seed

    from tierlake.data import migrate
    from tierlake.data.db import Database
    from tierlake.lake import extract

    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate.upgrade(db.engine)
    seed(db, orders=5)
    logs = tmp_path / "logs"
    deliver(logs, DAY + timedelta(hours=10), n=5, tag="x")
    info = extract(db.url, lake, access_logs_dir=logs)
    assert info.table("access_logs", source="access_logs").rows == 5
    assert extract(db.url, lake, access_logs_dir=logs).files_ingested == 0
    db.dispose()
    with pytest.raises(ExtractError):  # a broken file fails the run, naming the table
        bad = deliver(logs, DAY + timedelta(hours=11), tag="y")
        bad.write_bytes(b"broken")
        extract(db.url, lake, access_logs_dir=logs)
