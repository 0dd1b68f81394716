"""Streams written as Parquet files by pyarrow and committed to Delta in one commit.

The lake's big writes (first loads, raw appends) take this path; delta-rs must read what it
writes exactly as it reads its own files: same rows, same schema, same file pruning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from tierlake.lake import Lake, fanout
from tierlake.lake.errors import LakeError
from tierlake.lake.store import WriteTarget

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _mixed(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "qty": pa.array([i % 7 if i % 5 else None for i in ids], pa.int64()),
        "name": pa.array([f"item {i:06d}" for i in ids]),
        "price": pa.array([Decimal(i % 1000) / 100 for i in ids], pa.decimal128(10, 2)),
        "score": pa.array([i / 3 for i in ids], pa.float64()),
        "active": pa.array([i % 2 == 0 for i in ids]),
        "day": pa.array([date(2025, 1, 1 + i % 28) for i in ids], pa.date32()),
        "updated_at": pa.array([T0.replace(second=i % 60) for i in ids], pa.timestamp("us", "UTC")),
        "blob": pa.array([bytes([i % 256]) for i in ids], pa.binary()),
    })


def _stream(table: pa.Table, rows: int = 1000) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=rows))


def _stats(table: DeltaTable) -> list[dict]:
    return [json.loads(a["add"]["stats"]) for a in _log_actions(table) if "add" in a]


def _log_actions(table: DeltaTable) -> list[dict]:
    log = Path(table.table_uri.removeprefix("file://")) / "_delta_log"
    return [json.loads(line) for f in sorted(log.glob("*.json"))
            for line in f.read_text().splitlines()]


FILTERS = [
    pc.field("id") >= 1500,
    (pc.field("id") > 10) & (pc.field("id") < 20),
    pc.field("updated_at") >= pa.scalar(T0.replace(second=59), pa.timestamp("us", "UTC")),
    pc.field("name") == "item 002999",
    pc.field("qty").is_null(),
    pc.field("day") == pa.scalar(date(2025, 1, 28), pa.date32()),
    pc.field("active") == False,  # noqa: E712 - an Arrow expression, not a Python test
    pc.field("price") > pa.scalar(Decimal("9.50"), pa.decimal128(10, 2)),
]


def test_filtered_reads_match_a_table_delta_rs_wrote(lake: Lake, tmp_path: Path) -> None:
    data = _mixed(3000)
    lake.write("raw", "mixed", _stream(data))
    ours = lake.table("raw", "mixed")
    theirs_uri = str(tmp_path / "theirs")
    write_deltalake(theirs_uri, data)
    theirs = DeltaTable(theirs_uri)
    assert ours.schema() == theirs.schema()
    for where in FILTERS:  # a wrong bound in the statistics would drop or keep a file
        got = ours.to_pyarrow_dataset().to_table(filter=where).sort_by("id")
        want = theirs.to_pyarrow_dataset().to_table(filter=where).sort_by("id")
        assert got.num_rows > 0 and got.equals(want), str(where)
    stats = _stats(ours)[0]
    assert stats["numRecords"] == 3000
    assert stats["minValues"]["id"] == 0 and stats["maxValues"]["id"] == 2999
    assert stats["nullCount"]["qty"] == 600
    assert stats["minValues"]["updated_at"] == "2025-03-01T12:00:00.123Z"


def test_a_stream_rolls_into_files_and_commits_once(lake: Lake, monkeypatch) -> None:
    monkeypatch.setattr(Lake, "target_file_size", 64 * 1024)
    monkeypatch.setattr("tierlake.lake.files.ROW_GROUP_ROWS", 4096)
    data = _mixed(60_000)
    version = lake.write("raw", "rolled", _stream(data, 777), metadata={"k": "v"},
                         watermark=("tierlake.test", 41))
    table = lake.table("raw", "rolled")
    assert version == 0 and len(table.file_uris()) > 3
    assert table.transaction_version("tierlake.test") == 41
    assert lake.read_arrow("raw", "rolled").sort_by("id").equals(data)
    bounds = sorted((s["minValues"]["id"], s["maxValues"]["id"]) for s in _stats(table))
    assert bounds[0][0] == 0 and bounds[-1][1] == 59_999
    assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # in order
    info = next(t for t in lake.list_tables() if t.name == "rolled")
    assert info.rows == 60_000 and info.metadata["k"] == "v"


def test_appends_and_an_overwrite(lake: Lake) -> None:
    lake.write("raw", "t", _stream(_mixed(100)))
    lake.write("raw", "t", _stream(_mixed(50, start=100)))
    assert lake.read_arrow("raw", "t").num_rows == 150
    lake.write("raw", "t", _stream(_mixed(10, start=500)), mode="overwrite")
    assert sorted(lake.read_arrow("raw", "t")["id"].to_pylist()) == list(range(500, 510))
    assert lake.table("raw", "t").version() == 2


def test_a_new_column_still_joins_the_schema(lake: Lake) -> None:
    lake.write("raw", "t", _stream(_mixed(10)))
    wider = _mixed(5, start=10).append_column("note", pa.array(["new"] * 5))
    lake.write("raw", "t", _stream(wider))
    back = lake.read_arrow("raw", "t").sort_by("id")
    assert back["note"].to_pylist() == [None] * 10 + ["new"] * 5


def test_a_stream_failing_halfway_leaves_no_version_and_no_file(lake: Lake) -> None:
    lake.write("raw", "t", _stream(_mixed(10)))
    before = sorted(p.name for p in Path(lake.uri("raw", "t")).glob("*.parquet"))
    data = _mixed(300_000)

    def failing():
        for i, batch in enumerate(data.to_batches(max_chunksize=10_000)):
            if i == 25:  # after 250k rows: one row group is already in a file
                raise LakeError("the source went away")
            yield batch

    with pytest.raises(LakeError, match="went away"):
        lake.write("raw", "t", pa.RecordBatchReader.from_batches(data.schema, failing()))
    assert lake.table("raw", "t").version() == 0
    assert lake.read_arrow("raw", "t").num_rows == 10
    assert sorted(p.name for p in Path(lake.uri("raw", "t")).glob("*.parquet")) == before


# -- the fan-out writer (Lake.write_many) ----------------------------------------------------


def _numbered(batches: int, rows: int) -> pa.RecordBatchReader:
    def gen():  # type: ignore[no-untyped-def]
        for i in range(batches):
            ids = pa.array(range(i * rows, (i + 1) * rows), pa.int64())
            yield pa.record_batch([ids, pc.cast(ids, pa.string())], names=["id", "name"])

    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    return pa.RecordBatchReader.from_batches(schema, gen())


def test_a_slow_writer_bounds_its_queue_and_the_output_is_complete(
        lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """One writer is deliberately slow: the producer waits for it rather than queueing the
    stream for it (its queue grew with the table while the producer waited only when EVERY
    writer's queue was full), and both tables still get every row."""
    tees: list[fanout._Tee] = []

    class RecordedTee(fanout._Tee):
        def __init__(self, writers: int) -> None:
            super().__init__(writers)
            tees.append(self)

    monkeypatch.setattr(fanout, "_Tee", RecordedTee)

    def slowly(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            time.sleep(0.01)  # a slow consumer (no assertion on time)
            yield batch

    def write(zone: str, name: str, data: pa.RecordBatchReader, **kw: Any) -> int:
        if name == "fanout_slow":
            data = pa.RecordBatchReader.from_batches(data.schema, slowly(data))
        return lake.write(zone, name, data, **kw)

    batches, rows = 120, 1000
    versions = fanout.write_many(write, _numbered(batches, rows), [
        WriteTarget("current", "fanout_fast", ["id", "name"], mode="overwrite"),
        WriteTarget("raw", "fanout_slow", ["id"])])
    assert versions == [0, 0]
    (tee,) = tees
    assert max(tee.peak) <= fanout.AHEAD, f"queues grew to {tee.peak} batches"
    fast, slow = lake.read_arrow("current", "fanout_fast"), lake.read_arrow("raw", "fanout_slow")
    assert fast.num_rows == slow.num_rows == batches * rows
    assert sorted(slow["id"].to_pylist()) == list(range(batches * rows))
    assert pc.sum(fast["id"]).as_py() == sum(range(batches * rows))
    assert slow.column_names == ["id"]


def test_two_targets_pulled_by_delta_rs_are_refused(lake: Lake) -> None:
    """Two writers pulled on delta-rs's runtime can deadlock (fanout's docstring): refused
    before anything is written."""
    for name in ("a", "b"):  # existing tables without `name`: an append adds a column
        lake.write("raw", name, pa.table({"id": pa.array([1], pa.int64())}))
    with pytest.raises(ValueError, match="write_deltalake"):
        lake.write_many(_numbered(3, 10), [WriteTarget("raw", "a", ["id", "name"]),
                                           WriteTarget("raw", "b", ["id", "name"])])
    assert lake.table("raw", "a").version() == lake.table("raw", "b").version() == 0
