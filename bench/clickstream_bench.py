"""The clickstream source's incremental run against the age of the lake (1, 30, 365 days).

For each history length an events directory is filled with ``--files-per-hour`` delivered
files per hour (``--events`` events each, written in the web tier's delivery format) over
that many days, and ingested once into a fresh lake (not timed). Then ``--rounds`` times,
the histories taking turns (so load from elsewhere falls on all alike), one more hour of
files is delivered and

* ``tierlake``: ``ClickstreamSource.extract`` ingests it (timed: state, listing, parse,
  commit, and the compaction of a month the late window left, when one did), with the
  partitions and files it listed and the table's active files after the last round;
* ``anchor``: the same new files parsed with ``pyarrow.json`` and appended with a plain
  ``write_deltalake(mode="append", partition_by=["dt"])`` into a copy of the table with
  the same history (timed: what a loader that knows which files are new must do anyway);
* ``before``: what the source did before each run until this change, alone: read the
  distinct ``_source_file`` of the whole table and list every delivered file.

Medians are printed (and tierlake's slowest round: the one that compacted a month), with
each history's time as a ratio of the 1-day one (the aim: flat within 20%) and tierlake's
time as a ratio of the anchor. Results:
``bench/results/clickstream.json``.

    .venv/bin/python bench/clickstream_bench.py --days 1,30,365 --rounds 11
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from deltalake import write_deltalake

from tierlake.events import list_delivered, make_event, write_delivery
from tierlake.lake import Lake
from tierlake.lake.sources.clickstream import JSON_SCHEMA, TABLE, ClickstreamSource

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
END = datetime(2026, 11, 1, tzinfo=UTC)


def _deliver_hour(events_dir: Path, hour: datetime, files: int, events: int, seq: int) -> int:
    for f in range(files):
        at = hour + timedelta(minutes=f * 60 // files, seconds=7)
        batch = [make_event("page_view", path=f"/p/item-{i}", session_id=f"s{seq}-{i % 9}",
                            visitor_id=f"v{i % 13}", source="web-1", ts=at,
                            customer_id=i % 50 or None, product_id=i % 240 + 1)
                 for i in range(events)]
        seq += 1
        write_delivery(events_dir, batch, delivered_at=at, source="web-1", seq=seq,
                       fsync=False)
    return seq


@dataclass
class _History:
    """One history length's lake, its anchor copy and the figures of its rounds so far."""

    days: int
    events_dir: Path
    lake: Lake
    anchor_uri: str
    seq: int
    ours: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)
    before: list[float] = field(default_factory=list)
    listed: list[tuple[int, int]] = field(default_factory=list)


def _build(days: int, files: int, events: int, work: Path) -> _History:
    events_dir, lake = work / f"events-{days}", Lake(str(work / f"lake-{days}"))
    start = END - timedelta(days=days)
    seq = 0
    for h in range(days * 24):
        seq = _deliver_hour(events_dir, start + timedelta(hours=h), files, events, seq)
    first = ClickstreamSource(events_dir).extract(lake, run_id="history")[0]
    assert first.error is None and first.files == days * 24 * files, first
    history = lake.read_arrow("raw", TABLE)
    anchor_uri = lake.uri("raw", "clickstream/anchor")
    write_deltalake(anchor_uri, history, partition_by=["dt"])
    return _History(days, events_dir, lake, anchor_uri, seq)


def _round(h: _History, r: int, files: int, events: int) -> None:
    """One more hour delivered, ingested by the source (timed), by the anchor (timed), and
    what the source did before this change (timed)."""
    before = set(h.events_dir.rglob("*.jsonl"))
    h.seq = _deliver_hour(h.events_dir, END + timedelta(hours=r), files, events, h.seq)
    new = sorted(set(h.events_dir.rglob("*.jsonl")) - before)
    source = ClickstreamSource(h.events_dir)
    began = time.perf_counter()
    info = source.extract(h.lake, run_id=f"round-{r}")[0]
    h.ours.append(time.perf_counter() - began)
    assert info.error is None and info.files == files, info
    h.listed.append((source.listing.partitions, source.listing.files))
    began = time.perf_counter()
    table = pa.concat_tables(pj.read_json(p, parse_options=pj.ParseOptions(
        explicit_schema=JSON_SCHEMA, unexpected_field_behavior="ignore")) for p in new)
    table = table.append_column("dt", pa.array([f"{END + timedelta(hours=r):%Y-%m-%d}"]
                                               * table.num_rows))
    write_deltalake(h.anchor_uri, table, mode="append", partition_by=["dt"],
                    schema_mode="merge")
    h.anchor.append(time.perf_counter() - began)
    began = time.perf_counter()
    done = pc.unique(h.lake.table("raw", TABLE).to_pyarrow_dataset().to_table(
        columns=["_source_file"])["_source_file"])
    assert len(done) + files >= len(list_delivered(h.events_dir))
    h.before.append(time.perf_counter() - began)


def _result(h: _History, rounds: int, files: int, events: int) -> dict[str, Any]:
    rows = h.lake.read_arrow("raw", TABLE).num_rows
    assert rows == (h.days * 24 + rounds) * files * events, rows
    active = len(h.lake.table("raw", TABLE).get_add_actions(flatten=True))
    return {"days": h.days, "history_files": h.days * 24 * files,
            "tierlake_s": statistics.median(h.ours), "tierlake_max_s": max(h.ours),
            "active_files": active, "anchor_s": statistics.median(h.anchor),
            "before_s": statistics.median(h.before),
            "partitions_listed": max(p for p, _ in h.listed),
            "files_listed": max(f for _, f in h.listed), "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="1,30,365", help="history lengths, comma-separated")
    parser.add_argument("--rounds", type=int, default=7, help="incremental runs per history")
    parser.add_argument("--files-per-hour", type=int, default=2)
    parser.add_argument("--events", type=int, default=20, help="events per delivered file")
    args = parser.parse_args(argv)
    histories = []
    with tempfile.TemporaryDirectory(prefix="tierlake-clickbench-") as tmp:
        for days in (int(d) for d in args.days.split(",")):
            began = time.perf_counter()
            histories.append(_build(days, args.files_per_hour, args.events, Path(tmp)))
            print(f"  {days} day(s) of history built in {time.perf_counter() - began:.0f} s",
                  file=sys.stderr)
        # rounds interleaved across the histories: a burst of load from elsewhere on the
        # shared machine falls on every history alike, not on one
        for r in range(args.rounds):
            for h in histories:
                _round(h, r, args.files_per_hour, args.events)
        results = [_result(h, args.rounds, args.files_per_hour, args.events)
                   for h in histories]
    base = results[0]["tierlake_s"]
    print(f"{'history':>8} {'files':>7} {'tierlake ms':>12} {'vs first':>9} {'anchor ms':>10} "
          f"{'tierlake/anchor':>16} {'listed (partitions/files)':>26} {'before: state ms':>17} "
          f"{'slowest ms':>11} {'active files':>13}")
    for r in results:
        r["ratio_to_first"] = r["tierlake_s"] / base
        print(f"{r['days']:>7}d {r['history_files']:>7} {r['tierlake_s'] * 1000:>12.1f} "
              f"{r['ratio_to_first']:>9.2f} {r['anchor_s'] * 1000:>10.1f} "
              f"{r['tierlake_s'] / r['anchor_s']:>16.2f} "
              f"{r['partitions_listed']:>22}/{r['files_listed']:<3} {r['before_s'] * 1000:>17.1f} "
              f"{r['tierlake_max_s'] * 1000:>11.1f} {r['active_files']:>13}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clickstream.json").write_text(json.dumps(
        {"when": datetime.now(UTC).isoformat(), "python": platform.python_version(),
         "args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
