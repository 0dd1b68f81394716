"""What `tierlake pipeline run` and `status` print for a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tierlake.pipeline.status import freshness_seconds


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_summary(console: Console, info: Any) -> None:
    ext = info.extract
    if ext is not None:
        table = Table(title="Extract (store -> lake)")
        for col in ("table", "mode", "rows moved", "inserted", "updated", "deleted", "seconds"):
            table.add_column(col, justify="left" if col in ("table", "mode") else "right")
        for t in ext.tables:
            table.add_row(f"{t.source}/{t.table}", t.mode, f"{t.rows:,}", f"{t.inserted:,}",
                          f"{t.updated:,}", f"{t.deleted:,}", f"{t.seconds:.2f}")
        console.print(table)
        console.print(f"rows moved: {ext.rows:,}; clickstream files ingested: "
                      f"{ext.files_ingested:,}; lake size {_size(ext.lake_bytes)}")
    if info.jobs:
        table = Table(title=f"Jobs on {info.engine}")
        for col in ("job", "rows", "seconds"):
            table.add_column(col, justify="left" if col == "job" else "right")
        for j in info.jobs:
            table.add_row(j.name, f"{j.rows:,}", f"{j.seconds:.2f}")
        console.print(table)
    console.print(f"pipeline finished in {info.seconds:.1f} s")


def print_status(console: Console, tables: list[Any], status: dict[str, Any]) -> None:
    table = Table(title="Lake tables")
    for col in ("zone", "table", "version", "rows", "updated"):
        table.add_column(col, justify="right" if col in ("version", "rows") else "left")
    now = datetime.now(UTC)
    for t in tables:
        updated = t.last_commit
        age = (now - updated).total_seconds() if updated is not None else None
        rows = "?" if t.rows is None else f"{t.rows:,}"
        table.add_row(t.zone, t.name, str(t.version), rows, _age(age))
    console.print(table)
    if not status:
        console.print("No pipeline run yet: run `tierlake pipeline run`.")
        return
    outcome = "[green]ok[/]" if status.get("ok") else f"[red]failed[/]: {status.get('error')}"
    console.print(f"last run: {outcome} ({status.get('engine')}, {status.get('seconds')} s, "
                  f"finished {status.get('finished_at')})")
    console.print(f"freshness: last successful run {_age(freshness_seconds(status))}")
