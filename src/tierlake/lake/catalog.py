"""The lake's catalog: its tables, each with version, schema, size and last commit.

Layout (zones ``raw``, ``current``, ``curated``; :func:`describe_layout` renders it for the
docs): ``raw/db/<table>`` the change log as extracted (source columns minus
``extract.exclude``, plus ``_op`` u/d, ``_extracted_at``, ``_batch``); ``raw/clickstream/events``
the delivered events plus ``_source_file``, partitioned by ``month`` (by ``dt`` in lakes
written before); ``raw/lb/access_logs`` the load balancers' access logs, likewise;
``current/<table>`` each database table as of a raw version (MERGE), the later raw versions
applied by readers (merge-on-read, :mod:`tierlake.lake.current`); ``curated/<name>`` the
jobs' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from tierlake.lake.tables import ZONES, Tables

LAYOUT: tuple[tuple[str, str, str], ...] = (
    ("raw/db/<table>", "extract (database source)",
     "the change log exactly as extracted: the table's columns minus `extract.exclude`, plus "
     "`_op` (`u` upsert, `d` delete: a `d` row carries the primary key and, in `updated_at`, "
     "the time of the delete), `_extracted_at` and `_batch` (the run id). Append-only; one "
     "commit per run, whose app transaction `tierlake.extract.<table>` is the watermark "
     "(largest `updated_at`/`deleted_at` read, microseconds since 1970)."),
    ("raw/clickstream/events", "extract (clickstream source)",
     "every delivered event exactly once, as delivered, plus `_source_file` (the file's path "
     "under the events directory), `dt` (its delivery date) and `month` (the partition column)."),
    ("current/<table>", "extract",
     "the base of each table: the database table's rows, excluded columns removed, as of "
     "the raw version in its app transaction `tierlake.current.<table>`. With the raw "
     "versions after that one applied (merge-on-read, below) it is exactly the database "
     "table. Kept by MERGE from `raw/db/<table>`."),
    ("curated/<name>", "analytics jobs", "job outputs."),
)
# Keys delta-rs itself puts in a commit's info; the rest is the writer's custom metadata.
_COMMIT_KEYS = {"timestamp", "operation", "operationParameters", "engineInfo", "clientVersion",
                "operationMetrics", "version", "readVersion", "isBlindAppend", "userMetadata",
                "isolationLevel", "userId", "userName"}


def describe_layout() -> str:
    """The lake's layout as a Markdown table, for the docs."""
    rows = [f"| `{path}` | {writer} | {what} |" for path, writer, what in LAYOUT]
    return "\n".join(["| path under the lake URL | written by | holds |", "|---|---|---|", *rows])


@dataclass(frozen=True)
class TableInfo:
    """One table of the catalog, as :meth:`Lake.list_tables` reports it."""

    zone: str
    name: str
    uri: str
    version: int
    schema: pa.Schema
    partition_columns: list[str]
    rows: int
    files: int
    bytes: int
    last_commit: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)


def list_tables(lake: Tables) -> list[TableInfo]:
    """Every table of every zone with its version, schema, size and last commit."""
    fs = lake.filesystem()
    root = lake.root.removeprefix("s3://")
    found: list[tuple[str, str]] = []
    with lake.translate_errors("list", lake.root):
        for zone in ZONES:
            found += [(zone, n) for n in _find_tables(fs, f"{root}/{zone}", 2)]
    return [describe_table(lake, zone, name) for zone, name in sorted(found)]


def describe_table(lake: Tables, zone: str, name: str) -> TableInfo:
    """The catalog entry of the existing table ``zone/name``."""
    table = lake.table(zone, name)
    if table is None:
        raise ValueError(f"lake table {lake.uri(zone, name)} does not exist")
    with lake.translate_errors("describe", lake.uri(zone, name)):
        adds = pa.table(table.get_add_actions(flatten=True))
        rows = adds["num_records"].to_pylist() if adds.num_rows else []
        if any(r is None for r in rows):  # no stats in the log: ask the files
            rows = [_parquet_rows(table, lake)]
        last = table.history(1)[0] if table.version() >= 0 else {}
        ms = last.get("timestamp")
        return TableInfo(
            zone=zone, name=name, uri=lake.uri(zone, name), version=table.version(),
            schema=pa.schema(table.schema().to_arrow()),
            partition_columns=list(table.metadata().partition_columns),
            rows=int(sum(rows)), files=adds.num_rows,
            bytes=int(sum(adds["size_bytes"].to_pylist())) if adds.num_rows else 0,
            last_commit=datetime.fromtimestamp(ms / 1000, UTC) if ms else None,
            metadata={k: str(v) for k, v in last.items() if k not in _COMMIT_KEYS},
        )


def _find_tables(fs: Any, base: str, depth: int) -> list[str]:
    """Table names (relative to ``base``) found at most ``depth`` folders down."""
    try:
        children = [p for p in fs.ls(base, detail=True) if p["type"] == "directory"]
    except FileNotFoundError:
        return []
    names = []
    for child in children:
        path = child["name"].rstrip("/")
        leaf = path.rsplit("/", 1)[-1]
        if leaf.startswith(("_", ".")):
            continue
        if fs.exists(f"{path}/_delta_log"):
            names.append(leaf)
        elif depth > 1:
            names += [f"{leaf}/{n}" for n in _find_tables(fs, path, depth - 1)]
    return names


def _parquet_rows(table: DeltaTable, lake: Tables) -> int:
    import pyarrow.parquet as pq

    fs = lake.filesystem()
    total = 0
    for uri in table.file_uris():
        with fs.open(uri.removeprefix("s3://"), "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total
