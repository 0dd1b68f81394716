"""What `tierlake pipeline run` and `status` print for a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from tierlake.pipeline.status import freshness, freshness_seconds


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _since(when: datetime | None) -> float | None:
    return None if when is None else (datetime.now(UTC) - when).total_seconds()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _print_table(console: Console, table: Table) -> None:
    """A table fitted to a terminal; to a pipe or a file, at its natural width (nothing
    wrapped or cut, so `db/carts` stays whole for grep and for a reader)."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update(width=10_000, max_width=10_000)
    natural = Measurement.get(console, wide, table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


def print_summary(console: Console, info: Any) -> None:
    ext = info.extract
    if ext is not None:
        table = Table(title="Extract (store -> lake)")
        for col in ("table", "mode", "rows moved", "inserted", "updated", "deleted",
                    "not merged", "seconds"):
            table.add_column(col, justify="left" if col in ("table", "mode") else "right")
        for t in ext.tables:
            table.add_row(f"{t.source}/{t.table}", t.mode, f"{t.rows:,}", f"{t.inserted:,}",
                          f"{t.updated:,}", f"{t.deleted:,}", f"{t.pending:,}",
                          f"{t.seconds:.2f}")
        _print_table(console, table)
        console.print(f"rows moved: {ext.rows:,}; clickstream files ingested: "
                      f"{ext.files_ingested:,}; lake size {_size(ext.lake_bytes)}")
        console.print(f"store read from: {ext.database_source}", soft_wrap=True)
        if any(t.pending for t in ext.tables):
            console.print("inserted/updated/deleted count changes merged into current/; "
                          "'not merged' ones wait in raw/ and readers apply them "
                          "(`tierlake pipeline compact` merges them now)")
    if info.jobs:
        table = Table(title=f"Jobs on {info.engine}")
        for col in ("job", "rows", "seconds"):
            table.add_column(col, justify="left" if col == "job" else "right")
        for j in info.jobs:
            table.add_row(j.name, f"{j.rows:,}", f"{j.seconds:.2f}")
        _print_table(console, table)
    erased = getattr(ext, "erasure", None) if ext is not None else None
    if erased is not None and erased.customers:
        console.print(f"erasure: {len(erased.customers):,} deleted accounts' personal data "
                      f"removed from the lake ({erased.files_deleted:,} files deleted)")
    if info.vacuum is not None:
        console.print(f"vacuum: {sum(v.files for v in info.vacuum):,} old files, "
                      f"{_size(sum(v.bytes for v in info.vacuum))} removed")
    console.print(f"pipeline finished in {info.seconds:.1f} s")


def print_compaction(console: Console, done: list[Any]) -> None:
    if not done:
        console.print("Nothing to merge: every current/ table has all its changes.")
        return
    table = Table(title="Compaction (raw changes merged into current/)")
    for col in ("table", "changes", "inserted", "updated", "deleted", "version", "seconds"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for c in done:
        table.add_row(c.table, f"{c.merged:,}", f"{c.inserted:,}", f"{c.updated:,}",
                      f"{c.deleted:,}", str(c.version), f"{c.seconds:.2f}")
    _print_table(console, table)


def print_status(console: Console, tables: list[Any], status: dict[str, Any]) -> None:
    """``tables``: :class:`tierlake.pipeline.status.TableStatus` of every lake table."""
    table = Table(title="Lake tables")
    columns = ("zone", "table", "version", "rows", "with log", "not merged", "oldest waiting",
               "updated")
    for col in columns:
        table.add_column(col, justify="left" if col in ("zone", "table", "updated")
                         else "right")
    now = datetime.now(UTC)
    for t in tables:
        info = t.info
        age = (now - info.last_commit).total_seconds() if info.last_commit else None
        rows = "?" if info.rows is None else f"{info.rows:,}"
        if info.zone == "current":
            view = "?" if t.view_rows is None else f"{t.view_rows:,}"
            waiting = f"{t.waiting_rows:,}"
            oldest = _age(t.waiting_seconds) if t.waiting_rows else ""
        else:
            view = waiting = oldest = ""
        table.add_row(info.zone, info.name, str(info.version), rows, view, waiting, oldest,
                      _age(age))
    _print_table(console, table)
    if any(t.waiting_rows for t in tables):
        console.print("rows: what the Delta table holds (what a plain Delta reader sees); "
                      "with log: what tierlake's readers see, the changes 'not merged' applied. "
                      "The next extract merges changes waiting longer than "
                      "TIERLAKE_EXTRACT__MAX_STALENESS_SECONDS (`tierlake pipeline compact` "
                      "merges them now).")
    if status.get("last_vacuum_at"):
        last = status.get("last_vacuum") or {}
        console.print(f"last vacuum: {status['last_vacuum_at']} "
                      f"({last.get('files', 0):,} files, {_size(last.get('bytes', 0))} removed)")
    if not status or "ok" not in status:
        console.print("No pipeline run yet: run `tierlake pipeline run`.")
        return
    error = escape(str(status.get("error")))
    outcome = "[green]ok[/]" if status.get("ok") else f"[red]failed[/]: {error}"
    console.print(f"last run: {outcome} ({status.get('engine')}, {status.get('seconds')} s, "
                  f"finished {status.get('finished_at')})")
    console.print(f"freshness: last successful run {_age(freshness_seconds(status))}")
    fresh = freshness(status)
    if fresh.data_as_of is not None:
        console.print(f"curated zone: the store as of {fresh.data_as_of:%Y-%m-%d %H:%M:%S} UTC "
                      f"({_age(fresh.age_seconds())}); a job last wrote it "
                      f"{_age(_since(fresh.curated_changed_at))}")
    batch = status.get("micro_batch")
    if isinstance(batch, dict) and batch.get("started_at"):
        outcome = ("ok" if batch.get("ok") else
                   f"[red]failed[/]: {escape(str(batch.get('error')))}")
        moved = ", ".join(f"{t} {n:,}" for t, n in (batch.get("changed") or {}).items())
        console.print(f"last micro-batch: {outcome}, started {batch['started_at']}, "
                      f"{batch.get('seconds', 0)} s; changed: {moved or 'nothing'}; jobs: "
                      f"{', '.join(batch.get('jobs') or {}) or 'none'}")


def print_vacuum(console: Console, done: list[Any], *, dry_run: bool,
                 retention_hours: int) -> None:
    """What `tierlake pipeline vacuum` removed (or, with --dry-run, would remove)."""
    verb = "would remove" if dry_run else "removed"
    table = Table(title=f"Vacuum (files no version of the last {retention_hours:g} h needs)")
    for col in ("table", "files", "bytes", "checkpoint", "seconds"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for v in done:
        table.add_row(v.table, f"{v.files:,}", _size(v.bytes),
                      "" if v.checkpoint is None else f"v{v.checkpoint}", f"{v.seconds:.2f}")
    _print_table(console, table)
    console.print(f"{verb} {sum(v.files for v in done):,} files, "
                  f"{_size(sum(v.bytes for v in done))} over {len(done)} tables")
