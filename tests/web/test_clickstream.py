"""The clickstream event log: Firehose-style buffered, atomic, time-partitioned deliveries."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tierlake.events import iter_events, list_delivered, make_event, write_delivery
from tierlake.web.clickstream import EventLog

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def ev(n: int = 0, **kw):  # type: ignore[no-untyped-def]
    return make_event("page_view", path=f"/p/item-{n}", session_id="s1", visitor_id="v1",
                      source="web-1", **kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for(cond, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_make_event_has_every_field_and_utc_microsecond_ts() -> None:
    e = make_event("search", path="/search?q=mug", session_id="s", visitor_id="v",
                   source="web-1", query="mug", ts=datetime(2025, 11, 28, 19, 2, 11, tzinfo=UTC))
    assert e["ts"] == "2025-11-28T19:02:11.000000Z"
    assert re.fullmatch(r"[0-9a-f]{32}", e["event_id"]) and e["event_id"][12] == "4"
    assert e["customer_id"] is None and e["order_id"] is None and e["status"] == 200
    assert TS.match(ev()["ts"])
    with pytest.raises(ValueError):
        make_event("click", path="/", session_id="s", visitor_id="v", source="w")  # type: ignore[arg-type]


def test_delivery_layout_is_partitioned_by_delivery_time(tmp_path: Path) -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    path = write_delivery(tmp_path, [ev(1), ev(2)], delivered_at=at, source="web-2", seq=7)
    assert path == (tmp_path / "clickstream/dt=2025-03-04/hour=05"
                    / "clickstream-web-2-20250304T050607890123-000007.jsonl")
    assert [e["path"] for e in lines(path)] == ["/p/item-1", "/p/item-2"]
    assert no_temp_files(tmp_path)


def test_flushes_when_record_count_is_reached(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_records=10, flush_seconds=3600, source="web-1")
    for i in range(9):
        log.record(ev(i))
    assert list_delivered(tmp_path) == []
    log.record(ev(9))
    (path,) = list_delivered(tmp_path)
    assert [e["path"] for e in lines(path)] == [f"/p/item-{i}" for i in range(10)]
    for i in range(5):
        log.record(ev(i))
    assert len(list_delivered(tmp_path)) == 1 and log.buffered() == 5


def test_flushes_on_record_count_from_the_timer_thread(tmp_path: Path) -> None:
    with EventLog(tmp_path, flush_records=5, flush_seconds=3600, source="web-1") as log:
        for i in range(5):
            log.record(ev(i))
        assert wait_for(lambda: len(list_delivered(tmp_path)) == 1)


def test_flushes_on_interval(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_records=1000, flush_seconds=0.05, source="web-1").start()
    try:
        log.record(ev(1))
        log.record(ev(2))
        assert wait_for(lambda: len(list_delivered(tmp_path)) == 1)
        log.record(ev(3))
        assert wait_for(lambda: len(list_delivered(tmp_path)) == 2)
    finally:
        log.close()
    assert [len(lines(p)) for p in list_delivered(tmp_path)] == [2, 1]


def test_close_flushes_and_empty_flush_writes_nothing(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_records=100, flush_seconds=3600, source="web-1").start()
    assert log.flush() is None
    log.record(ev(1))
    path = log.close()
    assert path is not None and list_delivered(tmp_path) == [path]
    assert lines(path)[0]["path"] == "/p/item-1"


def test_each_delivery_is_a_new_file_and_files_are_never_rewritten(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_records=100, flush_seconds=3600, source="web-1")
    log.record(ev(1))
    first = log.flush()
    assert first is not None
    before = first.read_bytes()
    log.record(ev(2))
    second = log.flush()
    assert second is not None and second != first
    assert first.read_bytes() == before
    assert list_delivered(tmp_path) == [first, second]


def test_concurrent_records_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_records=97, flush_seconds=0.01, source="web-1").start()
    per_thread = 2000

    def produce(t: int) -> None:
        for i in range(per_thread):
            log.record(ev(t * per_thread + i))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    events = list(iter_events(tmp_path))
    assert len(events) == 8 * per_thread
    assert len({e["event_id"] for e in events}) == 8 * per_thread
    assert {e["path"] for e in events} == {f"/p/item-{i}" for i in range(8 * per_thread)}
    assert no_temp_files(tmp_path)


def test_failed_delivery_keeps_events_until_the_directory_is_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "events"
    blocker.write_text("a regular file where the directory should be")
    directory = blocker / "sub"
    log = EventLog(directory, flush_records=3, flush_seconds=3600, source="web-1")
    with capture_logs() as logs:
        for i in range(3):
            log.record(ev(i))  # the third triggers a delivery that fails
        log.record(ev(3))
        assert log.flush() is None
    assert log.buffered() == 4
    failures = [e for e in logs if e["event"] == "clickstream.delivery_failed"]
    assert failures and failures[0]["directory"] == str(directory) and "fix" in failures[0]
    assert failures[0]["log_level"] == "error"

    blocker.unlink()  # fix the directory
    path = log.flush()
    assert path is not None and list_delivered(directory) == [path]
    assert [e["path"] for e in lines(path)] == [f"/p/item-{i}" for i in range(4)]
    assert log.buffered() == 0 and log.flush() is None
    assert no_temp_files(tmp_path)


def test_buffer_cap_drops_oldest_with_a_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "events"
    blocker.write_text("")
    log = EventLog(blocker, flush_records=5, flush_seconds=3600, source="web-1",
                   max_buffered=20)
    with capture_logs() as logs:
        for i in range(5):
            log.record(ev(i))  # delivery fails; automatic retries now back off
        log.flush()  # explicit flush retries (and fails) at once
        for i in range(5, 30):
            log.record(ev(i))
        log.flush()
    assert log.buffered() == 20 and log.dropped == 10
    dropped = [e for e in logs if e["event"] == "clickstream.events_dropped"]
    assert dropped and dropped[0]["log_level"] == "warning" and dropped[0]["dropped"] == 10
    blocker.unlink()
    path = log.flush()
    assert path is not None
    assert [e["path"] for e in lines(path)] == [f"/p/item-{i}" for i in range(10, 30)]


def test_list_delivered_skips_temp_files_and_sorts_by_delivery(tmp_path: Path) -> None:
    late = write_delivery(tmp_path, [ev(1)], source="web-a", seq=1,
                          delivered_at=datetime(2025, 1, 2, 3, 30, tzinfo=UTC))
    early = write_delivery(tmp_path, [ev(2)], source="web-b", seq=1,
                           delivered_at=datetime(2025, 1, 2, 3, 10, tzinfo=UTC))
    (late.parent / f".{late.name}.tmp").write_text("{half")
    (late.parent / ".hidden.jsonl").write_text("{half")
    assert list_delivered(tmp_path) == [early, late]
    assert [e["path"] for e in iter_events(tmp_path)] == ["/p/item-2", "/p/item-1"]
    assert list_delivered(tmp_path / "missing") == []


def test_an_unencodable_event_is_dropped_alone_and_leaves_no_temp_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_delivery(tmp_path, [ev(1), {**ev(2), "query": object()}],  # type: ignore[list-item]
                       delivered_at=datetime.now(UTC), source="web-1", seq=1)
    assert list_delivered(tmp_path) == [] and no_temp_files(tmp_path)
    log = EventLog(tmp_path, flush_records=100, flush_seconds=3600, source="web-1")
    log.record(ev(1))
    log.record({**ev(2), "query": object()})  # type: ignore[typeddict-item]
    log.record(ev(3))
    with capture_logs() as logs:
        path = log.flush()
    assert path is not None and [e["path"] for e in lines(path)] == ["/p/item-1", "/p/item-3"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "clickstream.event_dropped"]
