"""The BI engine's view of the lake: each curated table's Delta version (looked up at most
once a second), the tables read once per version, and the pipeline's in-memory tables.

Versions come from the newest commit file in each table's ``_delta_log/`` (one directory
listing per table, no Delta log replay); its modification time is when the pipeline wrote
the table, what the freshness badge shows. A table is read at exactly that version
(``DeltaTable(uri, version=...)``) by one thread while the others wait for it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from tierlake.bi.catalog import CURATED, PIPELINE, TABLES
from tierlake.bi.pipeline_tables import build_pipeline_tables
from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)

VERSION_CHECK_SECONDS = 1.0
PIPELINE_REFRESH_SECONDS = 5.0
_LOG_NAME = re.compile(r"^(\d{20})\.json$")


@dataclass
class _Loaded:
    version: int
    table: pa.Table
    newest_day: dict[str, date | None] = field(default_factory=dict)


class LakeTables:
    """The curated tables (and ``pipeline_*``) of the lake, by version. Thread-safe."""

    def __init__(self, lake: Lake, status_path: Path | None = None) -> None:
        self.lake = lake
        self.status_path = status_path
        self._lock = threading.RLock()
        self._table_locks = {name: threading.Lock() for name in TABLES}
        self._versions: dict[str, int] = {}
        self._commit_times: dict[str, float] = {}
        self._versions_at: float | None = None
        self._loaded: dict[str, _Loaded] = {}
        self._pipeline: tuple[int, dict[str, pa.Table]] | None = None
        self._pipeline_key: tuple[Any, ...] | None = None
        self._pipeline_at = 0.0

    def commit_times(self) -> dict[str, float]:
        """Each curated table's newest commit (epoch seconds), as of the last look."""
        self.curated_versions()
        with self._lock:
            return dict(self._commit_times)

    def newest(self, name: str, column: str) -> date | None:
        """The largest value of a date column of curated table ``name`` (None: no rows or
        no table), computed once per version."""
        loaded = self.load(name) if name in CURATED else None
        if loaded is None or column not in loaded.table.column_names:
            return None
        with self._lock:
            if column not in loaded.newest_day:
                value = pc.max(loaded.table[column]).as_py()
                if isinstance(value, datetime):
                    value = value.date()
                loaded.newest_day[column] = value
            return loaded.newest_day[column]

    def curated_versions(self) -> dict[str, int]:
        """Each curated table's Delta version (absent: never written), at most one look
        at the lake per second."""
        with self._lock:
            now = time.monotonic()
            if self._versions_at is not None and now - self._versions_at < VERSION_CHECK_SECONDS:
                return dict(self._versions)
        versions, times = {}, {}
        for name in CURATED:
            found = self._newest_commit(name)
            if found is not None:
                versions[name], times[name] = found
        with self._lock:
            self._versions, self._commit_times = versions, times
            self._versions_at = time.monotonic()
            return dict(versions)

    def _newest_commit(self, name: str) -> tuple[int, float] | None:
        """(version, commit time) from the newest ``_delta_log/NNN.json``; None if none."""
        folder = f"{self.lake.root}/curated/{name}/_delta_log"
        if self.lake.is_s3:
            fs = self.lake.filesystem()
            try:
                entries = [(e["name"].rsplit("/", 1)[-1], e) for e in fs.ls(folder, detail=True)]
            except FileNotFoundError:
                return None
            logs = [(int(m.group(1)), e) for n, e in entries if (m := _LOG_NAME.match(n))]
            if not logs:
                return None
            version, entry = max(logs, key=lambda item: item[0])
            modified = entry.get("LastModified")
            return version, modified.timestamp() if modified else time.time()
        try:
            with os.scandir(folder) as it:
                logs = [(int(m.group(1)), e.path) for e in it if (m := _LOG_NAME.match(e.name))]
        except FileNotFoundError:
            return None
        if not logs:
            return None
        version, path = max(logs)
        try:
            return version, os.stat(path).st_mtime
        except FileNotFoundError:  # vacuumed between the listing and the stat: look again
            return self._newest_commit(name)

    def versions(self, names: set[str]) -> dict[str, int | None]:
        curated = self.curated_versions()
        found: dict[str, int | None] = {n: curated.get(n) for n in names if n in CURATED}
        if names & set(PIPELINE):
            version, _ = self.pipeline_tables()
            found.update({n: version for n in names if n in PIPELINE})
        return found

    def load(self, name: str) -> _Loaded | None:
        """The curated table at its current version (read once per version)."""
        version = self.curated_versions().get(name)
        if version is None:
            return None
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is not None and loaded.version >= version:
                return loaded
        with self._table_locks[name]:
            with self._lock:
                loaded = self._loaded.get(name)
                if loaded is not None and loaded.version >= version:
                    return loaded
            from deltalake import DeltaTable

            uri = self.lake.uri("curated", name)
            began = time.perf_counter()
            with self.lake.translate_errors("read", uri):
                table = DeltaTable(uri, version=version,
                                   storage_options=self.lake.storage_options
                                   ).to_pyarrow_dataset().to_table()
            log.info("bi.table_loaded", table=name, version=version, rows=table.num_rows,
                     seconds=round(time.perf_counter() - began, 3))
            loaded = _Loaded(version, table)
            with self._lock:
                self._loaded[name] = loaded
            return loaded

    def table(self, name: str, version: int | None) -> pa.Table | None:
        if version is None:
            return None
        if name in PIPELINE:
            return self.pipeline_tables()[1][name]
        loaded = self.load(name)
        return None if loaded is None else loaded.table

    def schema(self, name: str, version: int | None) -> pa.Schema:
        table = self.table(name, version)
        if table is None:
            raise KeyError(name)
        return table.schema

    def pipeline_tables(self) -> tuple[int, dict[str, pa.Table]]:
        """The in-memory ``pipeline_*`` tables, rebuilt when the status file or a curated
        version changed, or every few seconds (changes waiting in the log)."""
        try:
            stamp = self.status_path.stat().st_mtime_ns if self.status_path else None
        except FileNotFoundError:
            stamp = None
        key = (stamp, tuple(sorted(self.curated_versions().items())))
        with self._lock:
            fresh = time.monotonic() - self._pipeline_at < PIPELINE_REFRESH_SECONDS
            if self._pipeline is not None and key == self._pipeline_key and fresh:
                return self._pipeline
        status: dict[str, Any] = {}
        if self.status_path is not None:
            with suppress(FileNotFoundError, json.JSONDecodeError):
                status = json.loads(self.status_path.read_text())
        tables = build_pipeline_tables(self.lake, status)
        with self._lock:
            previous = self._pipeline
            if previous is not None and all(previous[1][n].equals(tables[n]) for n in tables):
                version = previous[0]
            else:
                version = (previous[0] + 1) if previous else 0
            self._pipeline = (version, tables)
            self._pipeline_key = key
            self._pipeline_at = time.monotonic()
            return self._pipeline
