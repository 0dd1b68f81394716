"""The clickstream source: every delivered file ingested exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tierlake.events import list_delivered, make_event, write_delivery
from tierlake.lake import Lake
from tierlake.lake.errors import ExtractError
from tierlake.lake.extract import run_sources
from tierlake.lake.sources.clickstream import (
    LATE_HOURS,
    WATERMARK_KEY,
    WINDOW_KEY,
    ClickstreamSource,
    Listing,
)


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
    assert lake.table("raw", "clickstream/events").metadata().partition_columns == ["month"]


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


def deliver_at(events_dir: Path, at: datetime, seq: int, n: int = 3) -> Path:
    events = [make_event("page_view", path=f"/p/{seq}-{i}", session_id="s", visitor_id="v",
                         source="web-1", ts=at) for i in range(n)]
    return write_delivery(events_dir, events, delivered_at=at, source="web-1", seq=seq,
                          fsync=False)


def assert_each_line_once(events_dir: Path, lake: Lake) -> None:
    events = lake.read_arrow("raw", "clickstream/events")
    lines = sum(len(p.read_text().splitlines()) for p in list_delivered(events_dir))
    assert events.num_rows == lines
    assert pc.count_distinct(events["event_id"]).as_py() == events.num_rows


def test_files_delivered_late_into_older_hours_are_ingested_exactly_once(
        tmp_path: Path, lake: Lake) -> None:
    events_dir = tmp_path / "events"
    day = datetime(2025, 11, 28, tzinfo=UTC)
    for seq, hour in enumerate((8, 9, 10), start=1):
        deliver_at(events_dir, day + timedelta(hours=hour), seq)
    assert ingest(events_dir, lake) == 3
    # a web instance whose delivery landed after a newer one: an older stamp, an older hour
    deliver_at(events_dir, day + timedelta(hours=9, minutes=30), 4)
    deliver_at(events_dir, day + timedelta(hours=10, minutes=59), 5)  # same hour as newest
    assert ingest(events_dir, lake) == 2
    assert ingest(events_dir, lake) == 0
    deliver_at(events_dir, day + timedelta(hours=14), 6)  # moves the window past 8-11
    deliver_at(events_dir, day + timedelta(hours=12, minutes=5), 7)  # late, in the window
    assert ingest(events_dir, lake) == 2
    assert ingest(events_dir, lake) == 0
    assert_each_line_once(events_dir, lake)
    # the state in the last commit names only the window's files, not the history
    meta = lake.table("raw", "clickstream/events").history(1)[0]
    assert meta[WATERMARK_KEY].endswith("20251128T140000000000-000006.jsonl")
    window = json.loads(meta[WINDOW_KEY])
    assert [w.split("/")[2] for w in window] == ["hour=12", "hour=14"]


def test_a_run_lists_and_reads_only_the_recent_hours_whatever_the_history(
        tmp_path: Path) -> None:
    """The work of an incremental run, counted in partitions and files, is the same with
    two days of history as with thirty."""
    listings = []
    for days in (2, 30):
        events_dir, lake = tmp_path / f"events-{days}", Lake(str(tmp_path / f"lake-{days}"))
        start = datetime(2025, 11, 28, tzinfo=UTC) - timedelta(days=days)
        for h in range(days * 24):
            deliver_at(events_dir, start + timedelta(hours=h, minutes=1), h + 1, n=1)
        assert ingest(events_dir, lake) == days * 24
        deliver_at(events_dir, start + timedelta(hours=days * 24, minutes=1), 0, n=1)
        source = ClickstreamSource(events_dir)
        (info,) = run_sources([source], lake).tables
        assert info.files == 1 and info.rows == 1
        listings.append(source.listing)
        assert_each_line_once(events_dir, lake)
    # the late window (LATE_HOURS before the newest hour) and the new hour, nothing else
    assert listings[0] == listings[1] == Listing(partitions=LATE_HOURS + 2,
                                                 files=LATE_HOURS + 2, read=1)


def test_a_run_failing_after_some_chunks_reports_the_rows_it_committed(
        tmp_path: Path, lake: Lake) -> None:
    events_dir = tmp_path / "events"
    at = datetime(2025, 11, 28, 10, tzinfo=UTC)
    for seq in (1, 2):
        deliver_at(events_dir, at + timedelta(minutes=seq), seq, n=4)
    bad = deliver_at(events_dir, at + timedelta(minutes=3), 3)
    bad.write_text("not json\n")
    source = ClickstreamSource(events_dir, chunk_bytes=1)  # one file per commit
    with pytest.raises(ExtractError) as failed:
        run_sources([source], lake)
    (info,) = failed.value.info.tables
    assert info.files == 2 and info.rows == 8
    assert str(bad) in info.error and "2 file(s), 8 rows were committed" in info.error
    assert lake.read_arrow("raw", "clickstream/events").num_rows == 8
    bad.unlink()
    deliver_at(events_dir, at + timedelta(minutes=4), 4, n=4)
    assert ingest(events_dir, lake) == 1  # goes on after the committed files, once
    assert_each_line_once(events_dir, lake)


def active_files_per_month(lake: Lake) -> dict[str, int]:
    months = (lake.table("raw", "clickstream/events").get_add_actions(flatten=True)
              .column("partition.month").to_pylist())
    return {m: months.count(m) for m in sorted(set(months))}


def test_months_the_late_window_left_are_compacted_to_one_file(tmp_path: Path,
                                                                lake: Lake) -> None:
    """A run's cost follows the table's active files: closed months keep one each."""
    events_dir = tmp_path / "events"
    start = datetime(2025, 10, 30, 20, tzinfo=UTC)
    for h in range(12):  # an ingest per hour across the end of October
        deliver_at(events_dir, start + timedelta(hours=h * 4), h + 1)
        assert ingest(events_dir, lake) == 1
    # October closed once the late window (2 hours) left it: compacted; November is open
    files = active_files_per_month(lake)
    assert files["2025-10"] == 1 and files["2025-11"] > 1, files
    assert_each_line_once(events_dir, lake)
    # the compaction kept the source's state: nothing is loaded twice, new files once
    assert ingest(events_dir, lake) == 0
    deliver_at(events_dir, start + timedelta(hours=12 * 4), 99)
    assert ingest(events_dir, lake) == 1
    assert_each_line_once(events_dir, lake)


def test_a_lake_partitioned_by_day_keeps_its_layout(tmp_path: Path, lake: Lake) -> None:
    """A table written before the month partition (by ``dt``) is appended to as it is."""
    events_dir = tmp_path / "events"
    first = deliver_at(events_dir, datetime(2025, 11, 28, 9, tzinfo=UTC), 1)
    source = ClickstreamSource(events_dir)
    rows = source.read_chunk([first])
    lake.write("raw", "clickstream/events", rows, mode="append", partition_by=["dt"],
               metadata=source.state_metadata(_state_of(source, first)))
    deliver_at(events_dir, datetime(2025, 11, 28, 10, tzinfo=UTC), 2)
    assert ingest(events_dir, lake) == 1
    table = lake.table("raw", "clickstream/events")
    assert table.metadata().partition_columns == ["dt"]
    assert "month" not in table.schema().to_arrow().names
    assert_each_line_once(events_dir, lake)


def _state_of(source: ClickstreamSource, path: Path):  # type: ignore[no-untyped-def]
    from tierlake.lake.sources.delivered import Ingested

    state = Ingested(source.layout, late_hours=source.late_hours)
    state.add([source.relative(path)])
    return state
