"""The clickstream source: every delivered file ingested exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tierlake.events import list_delivered, make_event, write_delivery
from tierlake.lake import Lake
from tierlake.lake.extract import run_sources
from tierlake.lake.sources.clickstream import ClickstreamSource


def deliver(events_dir: Path, n: int, seq: int, hour: int = 10) -> Path:
    at = datetime(2025, 11, 28, hour, 0, seq, tzinfo=UTC)
    events = [make_event("page_view", path=f"/p/{i}", session_id="s", visitor_id="v",
                         source="web-1", customer_id=i or None, ts=at) for i in range(n)]
    return write_delivery(events_dir, events, delivered_at=at, source="web-1", seq=seq)


def ingest(events_dir: Path, lake: Lake) -> int:
    return run_sources([ClickstreamSource(events_dir)], lake).files_ingested


def test_files_are_ingested_once_temp_files_never(tmp_path: Path, lake: Lake) -> None:
    events_dir = tmp_path / "events"
    for seq in range(1, 4):
        deliver(events_dir, 5 * seq, seq, hour=9 + seq % 2)
    hidden = list_delivered(events_dir)[0].with_name(".clickstream-web-1-x.jsonl.tmp")
    hidden.write_text('{"half a line": ')  # a delivery in progress: never read
    assert ingest(events_dir, lake) == 3
    assert ingest(events_dir, lake) == 0  # nothing new
    late = deliver(events_dir, 7, 4)
    assert ingest(events_dir, lake) == 1
    assert ingest(events_dir, lake) == 0

    events = lake.read_arrow("raw", "clickstream/events")
    lines = sum(len(p.read_text().splitlines()) for p in list_delivered(events_dir))
    assert events.num_rows == lines == 5 + 10 + 15 + 7
    assert pc.count_distinct(events["event_id"]).as_py() == events.num_rows  # none doubled
    assert events.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert events.schema.field("customer_id").type == pa.int64()
    late_rows = events.filter(pc.field("_source_file") == late.relative_to(events_dir).as_posix())
    assert late_rows.num_rows == 7 and set(late_rows["dt"].to_pylist()) == {"2025-11-28"}
    assert lake.table("raw", "clickstream/events").metadata().partition_columns == ["dt"]


def test_an_unreadable_file_commits_nothing_and_names_the_file(tmp_path: Path,
                                                               lake: Lake) -> None:
    events_dir = tmp_path / "events"
    deliver(events_dir, 3, 1)
    bad = deliver(events_dir, 1, 2)
    bad.write_text("not json\n")
    info = ClickstreamSource(events_dir).extract(lake, run_id="r1")[0]
    assert info.error and str(bad) in info.error and "move it out" in info.error
    assert lake.table("raw", "clickstream/events") is None  # the good file waits too
    bad.unlink()
    assert ingest(events_dir, lake) == 1
