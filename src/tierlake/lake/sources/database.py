"""The relational source: the store's database into ``raw/db/<table>`` and ``current/<table>``.

What is kept of an RDS export / change-data-capture job: every table is copied (minus
``extract.exclude``), the first run as a full snapshot, later runs incrementally, and the
lake never runs a transaction on the database (reads only, through ConnectorX's
``read_sql(..., return_type="arrow_stream", batch_size=N)``: a RecordBatchReader, bounded
memory, no per-row Python).

Per table and run:

1. Catch up: apply raw versions not yet in ``current/`` (a run killed between its two
   commits is finished here).
2. Read the watermark ``W`` (largest ``updated_at``/``deleted_at`` committed with the last raw
   batch, as the app transaction ``tierlake.extract.<table>``) and, BEFORE reading rows, the
   new one: ``max(updated_at)`` and ``max(deleted_at)`` of the table's tombstones.
3. Read the changes: no ``W`` yet (or a new column appeared) -> every row (``full``);
   else rows with ``updated_at >= W - lookback`` and tombstones of ``deleted_rows`` with
   ``deleted_at >= W - lookback`` (``incremental``), less the rows ``current/`` already has
   with the same ``updated_at`` (so a run moves only changed rows). A table without
   ``updated_at`` (a foreign database) is read whole each run and its deletes are the keys
   of ``current/`` missing from the read (``snapshot``).
4. Append them to ``raw/db/<table>`` with the new watermark in the same commit, then MERGE
   into ``current/<table>`` (see :mod:`tierlake.lake.current`).

The classic gap: a transaction that stamped ``updated_at = t`` but commits after a run read
past ``t`` is invisible to that run. The next run re-reads from ``W - lookback``, so it is
picked up as long as transactions (stamp to commit) last less than ``extract.lookback_seconds``
and the app servers' clocks agree within that margin. That is the assumption.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import make_url

from tierlake.config import ExtractConfig
from tierlake.data.db import Database, safe_url
from tierlake.errors import DatabaseUnavailableError
from tierlake.lake import current
from tierlake.lake.errors import LakeError, LakeUnavailableError, SourceError
from tierlake.lake.sources import reads
from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo
from tierlake.lake.sources.column_types import (
    UTC_US,
    lake_schema,
    normalize,
    plan_columns,
    to_utc,
)
from tierlake.lake.sources.sqlite_reader import SQLiteReader
from tierlake.lake.store import Lake, WriteTarget

TOMBSTONES = "deleted_rows"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
META = current.META
META_FIELDS = [pa.field("_op", pa.string()), pa.field("_extracted_at", UTC_US),
               pa.field("_batch", pa.string())]


def watermark_app_id(table: str) -> str:
    return f"tierlake.extract.{table}"


@dataclass(frozen=True)
class TableSpec:
    """A database table as reflected: the columns to copy, their declared types, its key."""

    name: str
    columns: list[str]
    declared: dict[str, Any]
    pk: list[str]
    # SQLite DATETIME columns that are NOT NULL: selected as text (see _TableRun._select).
    text_times: frozenset[str] = frozenset()

    @property
    def versioned(self) -> bool:
        return current.UPDATED_AT in self.columns


class DatabaseSource(Source):
    """Tables of the database at ``db_url`` (SQLite, MariaDB/MySQL, PostgreSQL)."""

    name = "db"

    def __init__(self, db_url: str, config: ExtractConfig | None = None) -> None:
        self.db_url = db_url
        self.config = config = config or ExtractConfig()
        self.exclude = set(config.exclude)
        self.lookback_us = int(config.lookback_seconds * 1_000_000)
        self.batch_rows = config.batch_rows
        self.parallel_reads = max(1, config.parallel_reads)
        self._cx_url = connectorx_url(db_url)
        self._sqlite = SQLiteReader() if self._cx_url.startswith("sqlite:") else None
        self._db: Database | None = None  # for one-value queries, open during extract()

    # -- discovery ------------------------------------------------------------------------------

    def list_tables(self) -> list[str]:
        return [spec.name for spec in self.reflect()[0]]

    def reflect(self) -> tuple[list[TableSpec], bool]:
        """The tables to copy, and whether the tombstone table exists."""
        db = Database(self.db_url, pool_size=1)
        try:
            with db.translate_errors():
                insp = inspect(db.engine)
                names = sorted(insp.get_table_names())
                specs = [self._spec(insp, n) for n in names if n not in self.exclude]
        finally:
            db.dispose()
        return specs, TOMBSTONES in names

    def _spec(self, insp: Any, name: str) -> TableSpec:
        cols = [c for c in insp.get_columns(name) if f"{name}.{c['name']}" not in self.exclude]
        pk = list(insp.get_pk_constraint(name).get("constrained_columns") or [])
        text_times = frozenset(
            c["name"] for c in cols if self._sqlite is not None and not c["nullable"]
            and isinstance(c["type"], sqltypes.DateTime))
        return TableSpec(name, [c["name"] for c in cols], {c["name"]: c["type"] for c in cols},
                         pk, text_times)

    # -- extract --------------------------------------------------------------------------------

    def extract(self, lake: Lake, *, run_id: str,
                progress: Progress | None = None) -> list[TableExtractInfo]:
        progress = progress or NoProgress()
        if self._sqlite is not None:
            self._sqlite.start()  # its imports (~0.5 s) overlap the reflection
        self._db = Database(self.db_url, pool_size=1)
        try:
            specs, has_tombstones = self.reflect()
            return [self._extract_table(lake, spec, run_id, has_tombstones, progress)
                    for spec in specs]
        finally:
            self._db.dispose()
            self._db = None
            self.close()

    def close(self) -> None:
        """Stop the SQLite reader process, if one runs (the next read starts another)."""
        if self._sqlite is not None:
            self._sqlite.close()

    def row(self, sql: str) -> tuple[Any, ...]:
        """One row, through SQLAlchemy (ConnectorX cannot type an all-NULL computed column
        on SQLite)."""
        db = self._db or Database(self.db_url, pool_size=1)
        try:
            with db.translate_errors(), db.engine.connect() as conn:
                return tuple(conn.exec_driver_sql(sql).one())
        finally:
            if db is not self._db:
                db.dispose()

    def _extract_table(self, lake: Lake, spec: TableSpec, run_id: str, has_tombstones: bool,
                       progress: Progress) -> TableExtractInfo:
        info = TableExtractInfo(source=self.name, table=spec.name)
        began = datetime.now(UTC)
        progress.start(spec.name)
        try:
            _TableRun(self, lake, spec, run_id, has_tombstones, info, progress).run()
        except (DatabaseUnavailableError, LakeUnavailableError):
            raise
        except (SourceError, LakeError) as exc:
            info.error = str(exc)
        info.seconds = (datetime.now(UTC) - began).total_seconds()
        progress.finish(spec.name)
        return info


    def read(self, sql: str | list[str], *, table: str) -> pa.RecordBatchReader:
        """The rows of ``sql``; a list of queries (key ranges) is read ``parallel_reads`` at
        a time and handed on in order (see :mod:`.reads`). Failures, when the read starts
        or halfway through, become :class:`DatabaseUnavailableError` or a
        :class:`SourceError` for ``table``."""
        queries = [sql] if isinstance(sql, str) else sql
        try:
            if self._sqlite is not None:  # in a child process: see sqlite_reader.py
                reader = self._sqlite.read(self._cx_url, queries, self.batch_rows,
                                           self.parallel_reads)
            else:
                reader = reads.read_many(self._cx_url, queries, self.batch_rows,
                                         self.parallel_reads)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # ConnectorX's Rust panics are BaseExceptions
            raise self._read_error(exc, table) from exc
        return pa.RecordBatchReader.from_batches(reader.schema, self._checked(reader, table))

    def _checked(self, reader: pa.RecordBatchReader, table: str) -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # ConnectorX's Rust panics are BaseExceptions
            raise self._read_error(exc, table) from exc

    def _read_error(self, exc: BaseException, table: str) -> Exception:
        text = str(exc).lower()
        if any(s in text for s in ("connect", "refused", "unable to open", "timed out",
                                   "no such host", "name or service", "reader process")):
            return DatabaseUnavailableError(
                f"cannot read the database at {safe_url(self.db_url)}: {exc}. Check that "
                "it is running and that TIERLAKE_DATABASE_URL is right.")
        return SourceError(
            f"reading table {table!r} failed: {exc}. If a column holds values that are not of "
            f"its declared type, fix the data, or leave the column out with extract.exclude "
            f"(add '{table}.<column>' to TIERLAKE_EXTRACT__EXCLUDE).")


class _TableRun:
    """One table's extract in one run (see the module docstring for the steps)."""

    def __init__(self, source: DatabaseSource, lake: Lake, spec: TableSpec, run_id: str,
                 has_tombstones: bool, info: TableExtractInfo, progress: Progress) -> None:
        self.src, self.lake, self.spec, self.info = source, lake, spec, info
        self.run_id, self.has_tombstones, self.progress = run_id, has_tombstones, progress
        self.extracted_at = pa.scalar(datetime.now(UTC), UTC_US)
        self.q = make_url(source.db_url).get_dialect()().identifier_preparer.quote
        self._snap: current.Snapshot | None = None

    def run(self) -> None:
        spec, lake = self.spec, self.lake
        if not spec.pk:
            raise SourceError(f"table {spec.name!r} has no primary key, so changes cannot be "
                              f"applied; add one, or add '{spec.name}' to extract.exclude")
        self._apply()  # catch up first
        self._snap = current.snapshot(lake, spec.name)  # what current/ holds, read once
        raw = lake.table("raw", f"db/{spec.name}")
        watermark = raw.transaction_version(watermark_app_id(spec.name)) if raw else None
        raw_columns = set(pa.schema(raw.schema().to_arrow()).names) if raw else set()
        if not spec.versioned:
            mode = "snapshot"
        elif watermark is None or set(spec.columns) - raw_columns:
            mode = "full"
        else:
            mode = "incremental"
        self.info.mode = mode
        since = watermark - self.src.lookback_us if watermark is not None else None
        new_watermark = max(watermark or 0, self._max_us()) if spec.versioned else None

        # Read from the lake and the tombstones first: the batches below are produced inside
        # delta-rs's writer (where opening a Delta table is not allowed), and a reader of
        # the database must be consumed before the next query.
        known = have = deletes = None
        if spec.versioned and self.has_tombstones and since is not None:
            deletes = self._tombstones(since)
        if mode == "snapshot" and raw is not None:
            have = current.read_keys(lake, spec.name, spec.pk, versioned=False, snap=self._snap)
        rows = self.src.read(self._select(since) if mode == "incremental" else self._whole(),
                             table=spec.name)
        if mode == "incremental":  # the changes: few, and the MERGE holds them all anyway
            changed = rows.read_all()
            known = self._known(changed, since)  # type: ignore[arg-type]
            rows = changed.to_reader()
        plans = plan_columns(spec.name, rows.schema, spec.declared)  # refuses before writing
        schema = pa.schema([*lake_schema(plans), *META_FIELDS])
        batches = self._changes(rows, plans, schema, known, deletes, have)
        first = next(batches, None)
        if first is None and mode != "full":
            return self._apply()  # nothing changed: no raw commit
        reader = pa.RecordBatchReader.from_batches(schema, _chain(first, batches))
        meta = {"tierlake.batch": self.run_id, "tierlake.mode": mode,
                **current.key_metadata(spec.pk)}
        if new_watermark is not None:
            meta["tierlake.watermark"] = _literal(new_watermark)
        raw_write = WriteTarget(
            "raw", f"db/{spec.name}", schema.names, mode="append", metadata=meta,
            watermark=(None if new_watermark is None
                       else (watermark_app_id(spec.name), new_watermark)))
        if raw is not None:
            self.info.raw_version = lake.write_many(reader, [raw_write])[0]
            return self._apply()
        # The first load: raw and current from the one read, written side by side.
        cur_write = current.first_load(spec.name, [n for n in schema.names if n not in META])
        self.info.raw_version, self.info.current_version = lake.write_many(
            reader, [raw_write, cur_write])
        self.info.inserted = self.info.rows
        if self.info.raw_version != 0:  # another extract created raw meanwhile: MERGE it
            self._apply()

    def _known(self, changed: pa.Table, since: int) -> pa.Table | None:
        """Keys and ``updated_at`` of ``current/`` rows as recent as the re-read window,
        within the key range of ``changed`` (so only the files holding it are read)."""
        if not changed.num_rows:
            return None
        where = pc.field(current.UPDATED_AT) >= _ts(since)
        key = self.spec.pk[0]
        if len(self.spec.pk) == 1 and pa.types.is_integer(changed.schema.field(key).type):
            bounds = pc.min_max(changed[key])
            where &= (pc.field(key) >= bounds["min"].as_py()) & (
                pc.field(key) <= bounds["max"].as_py())
        return current.read_keys(self.lake, self.spec.name, self.spec.pk, versioned=True,
                                 where=where, snap=self._snap)

    def _whole(self) -> str | list[str]:
        """The whole table: as key ranges (read in parallel, in key order) when the key is
        one integer column, else one query."""
        spec, sql = self.spec, self._select(None)
        if (len(spec.pk) != 1 or self.src.parallel_reads < 2
                or not isinstance(spec.declared.get(spec.pk[0]), sqltypes.Integer)):
            return sql
        key = self.q(spec.pk[0])
        lo, hi, rows = self.src.row(
            f"SELECT min({key}), max({key}), count(*) FROM {self.q(spec.name)}")
        if not isinstance(lo, int) or not isinstance(hi, int):
            return sql  # empty, or SQLite holding something else than integers
        ranges = reads.key_ranges(lo, hi, self.src.batch_rows, int(rows))
        if len(ranges) <= 1:
            return sql
        return [f"{sql} WHERE {key} >= {a} AND {key} < {b}" for a, b in ranges]

    def _apply(self) -> None:
        done = current.apply_changes(self.lake, self.spec.name, self.spec.pk,
                                     versioned=self.spec.versioned,
                                     policy=self.src.config)
        self.info.inserted += done.inserted
        self.info.updated += done.updated
        self.info.deleted += done.deleted
        self.info.current_version = done.version
        self.info.pending = done.pending

    # -- queries --------------------------------------------------------------------------------

    def _select(self, since: int | None) -> str:
        # SQLite keeps DATETIME as text, which ConnectorX parses row by row (about half of a
        # full read of order_lines); as text it is parsed by Arrow, vectorised (column_types).
        # Only NOT NULL columns: ConnectorX infers an untyped expression's type from its first
        # value and cannot from a NULL.
        cols = ", ".join(f"CAST({self.q(c)} AS TEXT) AS {self.q(c)}"
                         if c in self.spec.text_times else self.q(c) for c in self.spec.columns)
        sql = f"SELECT {cols} FROM {self.q(self.spec.name)}"
        if since is not None:
            sql += f" WHERE {self.q(current.UPDATED_AT)} >= '{_literal(since)}'"
        return sql

    def _max_us(self) -> int:
        t = self.q(self.spec.name)
        found = [self._scalar_us(f"SELECT max({self.q(current.UPDATED_AT)}) AS m FROM {t}")]
        if self.has_tombstones:
            found.append(self._scalar_us(
                f"SELECT max(deleted_at) AS m FROM {self.q(TOMBSTONES)} "
                f"WHERE table_name = '{self.spec.name}'"))
        return max([f for f in found if f is not None], default=0)

    def _scalar_us(self, sql: str) -> int | None:
        """A one-value timestamp query, in microseconds since the epoch."""
        value = self.src.row(sql)[0]
        if value is None:
            return None
        if isinstance(value, str):  # SQLite keeps text
            try:
                value = datetime.fromisoformat(value)
            except ValueError as exc:
                raise SourceError(f"{self.spec.name}: {sql!r} gave {value!r}, not a timestamp; "
                                  "fix the data (updated_at must be a UTC timestamp)") from exc
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - EPOCH) // timedelta(microseconds=1)

    # -- the change batches ---------------------------------------------------------------------

    def _changes(self, rows: pa.RecordBatchReader, plans: list, schema: pa.Schema,
                 known: pa.Table | None, deletes: pa.Table | None, have: pa.Table | None
                 ) -> Iterator[pa.RecordBatch]:
        """Upserts (less the ``known`` unchanged rows), then deletes: tombstones, or for a
        snapshot the keys of ``current/`` (``have``) missing from the read."""
        spec = self.spec
        seen_keys = []
        for raw_batch in rows:
            data = pa.Table.from_batches([normalize(spec.name, raw_batch, plans)])
            if known is not None and known.num_rows:
                data = data.join(known, keys=[*spec.pk, current.UPDATED_AT],
                                 join_type="left anti")
            if have is not None:
                seen_keys.append(data.select(spec.pk))
            self.progress.advance(spec.name, data.num_rows)
            yield from self._with_meta(data, "u", schema)
        if deletes is not None:
            yield from self._with_meta(_deletes(deletes, schema), "d", schema)
        if have is not None and have.num_rows:
            read = pa.concat_tables(seen_keys) if seen_keys else have.schema.empty_table()
            gone = have.join(read, keys=spec.pk, join_type="left anti")
            yield from self._with_meta(_deletes(gone, schema), "d", schema)

    def _with_meta(self, data: pa.Table, op: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        if not data.num_rows:
            return
        self.info.rows += data.num_rows
        n = data.num_rows
        data = (data.append_column("_op", pa.repeat(pa.scalar(op), n))
                .append_column("_extracted_at", pa.repeat(self.extracted_at, n))
                .append_column("_batch", pa.repeat(pa.scalar(self.run_id), n)))
        yield from data.select(schema.names).cast(schema).to_batches()

    def _tombstones(self, since: int) -> pa.Table | None:
        """Keys deleted since ``since`` (and when) that ``current/`` still holds, unchanged
        after the delete."""
        spec = self.spec
        found = self.src.read(
            f"SELECT row_key, deleted_at FROM {self.q(TOMBSTONES)} WHERE table_name = "
            f"'{spec.name}' AND deleted_at >= '{_literal(since)}'", table=TOMBSTONES).read_all()
        snap = self._snap
        if not found.num_rows or snap is None:
            return None
        keys = _split_keys(spec, found.column("row_key"), pa.schema(snap.cur.schema().to_arrow()))
        keys = keys.append_column(current.UPDATED_AT, _utc(found.column("deleted_at")))
        where = pc.field(spec.pk[0]).isin(keys[spec.pk[0]]) if len(spec.pk) == 1 else None
        have = current.read_keys(self.lake, spec.name, spec.pk, versioned=True, where=where,
                                 snap=snap)
        have = have.rename_columns([*spec.pk, "_current_updated_at"])  # type: ignore[union-attr]
        matched = keys.join(have, keys=spec.pk, join_type="inner")
        keep = pc.less_equal(matched["_current_updated_at"], matched[current.UPDATED_AT])
        return matched.filter(keep).drop_columns(["_current_updated_at"])


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
           ) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest


def _deletes(keys: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows carrying only the key (and ``updated_at`` = time of the delete)."""
    n = keys.num_rows
    fields = [f for f in schema if f.name not in current.META]
    columns = [keys[f.name].cast(f.type) if f.name in keys.column_names else pa.nulls(n, f.type)
               for f in fields]
    names = [f.name for f in fields]
    return pa.table(columns, names=names)


def _split_keys(spec: TableSpec, row_key: pa.ChunkedArray, schema: pa.Schema) -> pa.Table:
    """Tombstone keys (``"1"`` or ``"1,2"``) as typed primary-key columns."""
    types = {f.name: f.type for f in schema}
    if len(spec.pk) == 1:
        parts = [row_key]
    else:
        split = pc.split_pattern(row_key, ",")
        parts = [pc.list_element(split, i) for i in range(len(spec.pk))]
    try:
        return pa.table([p.cast(types[k]) for p, k in zip(parts, spec.pk, strict=True)],
                        names=spec.pk)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"tombstones of {spec.name!r} in {TOMBSTONES}.row_key do not match "
                          f"its primary key {spec.pk}: {exc}") from exc


def _utc(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pa.chunked_array([to_utc(arr)], UTC_US)


def _ts(us: int | None) -> pa.Scalar:
    return pa.scalar(us, UTC_US)


def _literal(us: int) -> str:
    """A UTC instant as the databases store it: ``2025-01-02 03:04:05.123456`` (naive)."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%d %H:%M:%S.%f")


def connectorx_url(db_url: str) -> str:
    """The ConnectorX form of a SQLAlchemy URL (``sqlite:///abs/path``, ``mysql://``,
    ``postgresql://``)."""
    url = make_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise SourceError("the extract needs a SQLite file, not an in-memory database")
        return "sqlite://" + quote(os.path.abspath(url.database))
    scheme = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}.get(backend)
    if scheme is None:
        raise SourceError(f"the extract cannot read {backend!r} databases; use SQLite, "
                          "MariaDB/MySQL or PostgreSQL")
    return url.set(drivername=scheme, query={}).render_as_string(hide_password=False)
