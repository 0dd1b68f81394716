"""The lake: Delta Lake tables on a local directory or on S3 (the S3 of the AWS design).

Decisions (made once, kept here):

* Table format: Delta Lake through ``deltalake`` (delta-rs). A write is one atomic commit
  (a new ``_delta_log/NNN.json``): readers see the table before or after it, never half.
  Streams are written as Parquet by pyarrow and committed in one transaction
  (:mod:`tierlake.lake.files`: zstd, row groups of 128k rows, files of ~8 MiB: bounded
  memory per writer, and small enough that a MERGE rewrites few files); partitioned writes
  and appends with a new column go through ``write_deltalake`` with
  ``schema_mode="merge"``, so a new source column appears without a manual step.
* A writer's progress (a watermark) is committed *with* its data, in the same commit:
  ``CommitProperties(custom_metadata=..., app_transactions=[Transaction(app_id, version)])``.
  ``DeltaTable.transaction_version(app_id)`` reads it back.
* Readers use the current version's file list (:meth:`Lake.files`, ``file_uris()``), never a
  folder glob: a folder also holds files of older versions and of failed writes.

What is kept of Amazon S3: a lake URL ``s3://bucket/prefix`` is served by any S3 endpoint
(AWS, MinIO, moto) configured from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``; ``AWS_ALLOW_HTTP=true`` is set for an ``http://`` endpoint). Objects
are written once and never modified; a commit relies on S3's conditional PUT (``If-None-Match``,
on AWS since 2024) so two writers cannot both create version N. A missing bucket
(``NoSuchBucket``), a refused connection and ``AccessDenied`` become a :class:`LakeError`
naming the fix. A local directory behaves the same way (rename-based commits).

Layout (zones ``raw``, ``current``, ``curated``; :func:`describe_layout` renders it for the
docs): ``raw/db/<table>`` the change log as extracted (source columns minus
``extract_exclude``, plus ``_op`` u/d, ``_extracted_at``, ``_batch``); ``raw/clickstream/events``
the delivered events plus ``_source_file``, partitioned by ``dt``; ``current/<table>`` each
database table as of a raw version (MERGE), the later raw versions applied by readers
(merge-on-read, :mod:`tierlake.lake.current`); ``curated/<name>`` the jobs' outputs.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from tierlake.errors import TierlakeError
from tierlake.lake.errors import LakeError, LakeUnavailableError
from tierlake.lake.files import (
    FileWrite,
    arrow_filesystem,
    can_write,
    commit,
    same_schema,
    writer_properties,
)

ZONES = ("raw", "current", "curated")
LAYOUT: tuple[tuple[str, str, str], ...] = (
    ("raw/db/<table>", "extract (database source)",
     "the change log exactly as extracted: the table's columns minus `extract_exclude`, plus "
     "`_op` (`u` upsert, `d` delete: a `d` row carries the primary key and, in `updated_at`, "
     "the time of the delete), `_extracted_at` and `_batch` (the run id). Append-only; one "
     "commit per run, whose app transaction `tierlake.extract.<table>` is the watermark "
     "(largest `updated_at`/`deleted_at` read, microseconds since 1970)."),
    ("raw/clickstream/events", "extract (clickstream source)",
     "every delivered event exactly once, as delivered, plus `_source_file` (the file's path "
     "under the events directory) and `dt` (its delivery date, the partition column)."),
    ("current/<table>", "extract",
     "the base of each table: the database table's rows, excluded columns removed, as of "
     "the raw version in its app transaction `tierlake.current.<table>`. With the raw "
     "versions after that one applied (merge-on-read, below) it is exactly the database "
     "table. Kept by MERGE from `raw/db/<table>`."),
    ("curated/<name>", "analytics jobs", "job outputs."),
)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]*(/[A-Za-z0-9_][A-Za-z0-9_.=-]*)*$")
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


class Lake:
    """The lake at ``url``: a local directory or ``s3://bucket/prefix``."""

    # Files of ~8 MiB (~900k order lines): a MERGE of recent changes rewrites the newest
    # file, so its cost follows this size (16 MiB: 12% of a full extract, 8 MiB: 8%, on
    # 5M lines; docs/benchmarks.md). Row groups are 128k rows (files.ROW_GROUP_ROWS).
    target_file_size = 8 * 1024 * 1024

    @property
    def table_configuration(self) -> dict[str, str]:
        # kept by each table, so its MERGEs (current/) write files of this size too
        return {"delta.targetFileSize": str(self.target_file_size)}

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            self.bucket = parsed.netloc
            if not self.bucket:
                raise LakeError(f"lake URL {url!r} has no bucket; use s3://bucket/prefix "
                                "(TIERLAKE_LAKE_URL)")
            prefix = parsed.path.strip("/")
            self.root = f"s3://{self.bucket}" + (f"/{prefix}" if prefix else "")
        elif parsed.scheme in ("", "file") and url.strip():
            self.bucket = ""
            self.root = str(Path(parsed.path if parsed.scheme else url).expanduser().resolve())
        else:
            raise LakeError(f"lake URL {url!r} is not supported; use a local directory or "
                            "s3://bucket/prefix in TIERLAKE_LAKE_URL")
        self.is_s3 = bool(self.bucket)
        self.storage_options = _s3_options() if self.is_s3 else None

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- paths ----------------------------------------------------------------------------------

    def uri(self, zone: str, name: str) -> str:
        """Where table ``zone/name`` lives, e.g. ``s3://lake/raw/db/orders``."""
        if zone not in ZONES:
            raise LakeError(f"unknown lake zone {zone!r}; use one of {', '.join(ZONES)}")
        if not _NAME.match(name) or ".." in name:
            raise LakeError(f"bad lake table name {name!r}: use letters, digits, _ . - and /")
        return f"{self.root}/{zone}/{name}"

    # -- reading --------------------------------------------------------------------------------

    def table(self, zone: str, name: str) -> DeltaTable | None:
        """The table's latest version, or None if it was never written."""
        uri = self.uri(zone, name)
        with self.translate_errors("open", uri):
            try:
                return DeltaTable(uri, storage_options=self.storage_options)
            except TableNotFoundError:
                return None

    def files(self, zone: str, name: str) -> list[str]:
        """The Parquet files of the current version (local paths for a local lake). For a
        ``current`` table that is its base, without the changes not merged yet
        (:func:`tierlake.lake.current.pending`)."""
        table = self.table(zone, name)
        return [] if table is None else list(table.file_uris())

    def read_arrow(self, zone: str, name: str, columns: list[str] | None = None) -> pa.Table:
        """The whole current version as an Arrow table; for ``current`` tables, with the
        changes not merged yet applied (:func:`tierlake.lake.current.read`)."""
        if zone == "current":
            from tierlake.lake import current

            return current.read(self, name, columns)
        table = self.table(zone, name)
        if table is None:
            raise LakeError(f"lake table {self.uri(zone, name)} does not exist yet; run "
                            "`tierlake extract` (or the job that writes it) first")
        with self.translate_errors("read", self.uri(zone, name)):
            return table.to_pyarrow_dataset().to_table(columns=columns)

    # -- writing --------------------------------------------------------------------------------

    def write(
        self,
        zone: str,
        name: str,
        data: pa.Table | pa.RecordBatchReader,
        *,
        mode: Literal["append", "overwrite"] = "append",
        partition_by: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        watermark: tuple[str, int] | None = None,
    ) -> int:
        """Commit ``data`` as one new version (returned); nothing is committed on error.

        ``watermark`` = ``(app_id, version)`` is committed in the same commit, as a Delta
        app transaction. Appends merge new columns into the schema; overwrites replace it.
        """
        uri = self.uri(zone, name)
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', not {mode!r}")
        if isinstance(data, pa.RecordBatchReader) and not partition_by and can_write(data.schema):
            with self.translate_errors("write", uri):
                existing = self.table(zone, name)
                if existing is None or same_schema(existing, data.schema) or mode == "overwrite":
                    return self._write_files(uri, existing, data, mode, metadata, watermark)
        failures: list[BaseException] = []  # raised by the data's producer, while streamed
        if isinstance(data, pa.RecordBatchReader):
            data = pa.RecordBatchReader.from_batches(data.schema, _capture(data, failures))
        with self.translate_errors("write", uri):
            try:
                write_deltalake(
                    uri, data, mode=mode, partition_by=partition_by,
                    schema_mode="merge" if mode == "append" else "overwrite",
                    storage_options=self.storage_options,
                    writer_properties=writer_properties(data.schema),
                    target_file_size=self.target_file_size,
                    configuration=self.table_configuration,
                    commit_properties=self.commit_properties(metadata, watermark),
                )
            except Exception:
                if failures:  # delta-rs wraps it in a DeltaError: give back the original
                    raise failures[0] from None
                raise
            return DeltaTable(uri, storage_options=self.storage_options).version()

    def _write_files(self, uri: str, existing: DeltaTable | None, data: pa.RecordBatchReader,
                     mode: str, metadata: dict[str, str] | None,
                     watermark: tuple[str, int] | None) -> int:
        """A stream as Parquet files written here, then one commit (see ``files.py``)."""
        fs, root = arrow_filesystem(self.root, self.storage_options)
        write = FileWrite(fs, root + uri.removeprefix(self.root), data.schema,
                          self.target_file_size)
        if not self.is_s3:
            Path(write.path).mkdir(parents=True, exist_ok=True)
        write.write(iter(data))
        try:
            commit(uri, existing, write, mode=mode, storage_options=self.storage_options,
                   configuration=self.table_configuration,
                   commit_properties=self.commit_properties(metadata, watermark))
        except BaseException:
            write.discard()
            raise
        return DeltaTable(uri, storage_options=self.storage_options).version()

    def write_many(self, data: pa.RecordBatchReader, targets: list[WriteTarget]) -> list[int]:
        """Write one stream into several tables, reading it once; their new versions.

        Each target takes its columns of every batch and is written by its own thread
        (delta-rs encodes and uploads without the GIL), through bounded queues, so memory
        stays bounded and the stream is read once. If the stream fails, no target commits.
        Each target commits on its own, so a failure at commit time can leave some committed
        and not others: callers must recover from any subset (the extract does, see
        ``sources/database.py``).
        """
        if len(targets) == 1:
            t = targets[0]
            return [self.write(t.zone, t.name, _project(data, t.columns), mode=t.mode,
                               metadata=t.metadata, watermark=t.watermark)]
        tee = _Tee(len(targets))
        feeds = [_Feed(self, t, data.schema, tee, i) for i, t in enumerate(targets)]
        for feed in feeds:
            feed.thread.start()
        failure: BaseException | None = None
        try:
            for batch in data:
                tee.put_all([batch.select(feed.target.columns) for feed in feeds])
        except BaseException as exc:  # noqa: BLE001 - handed to the writers, raised below
            failure = exc
        last = _Abort(failure) if failure or any(tee.ended) else _END
        tee.put_all([last] * len(feeds), wait=False)
        for feed in feeds:
            feed.thread.join()
        if isinstance(failure, _FeedFailed):
            failure = None  # a writer failed: its own error is raised below
        if failure is not None:
            raise failure
        errors = [f.error for f in feeds if f.error is not None]
        if errors:  # the writer that failed first, not those it stopped
            raise next((e for e in errors if not isinstance(e, _FeedFailed)), errors[0])
        return [feed.version for feed in feeds]  # type: ignore[misc]

    @staticmethod
    def commit_properties(
        metadata: dict[str, str] | None = None, watermark: tuple[str, int] | None = None
    ) -> CommitProperties:
        txns = [Transaction(app_id=watermark[0], version=watermark[1])] if watermark else None
        return CommitProperties(custom_metadata=dict(metadata or {}), app_transactions=txns)

    # -- catalog --------------------------------------------------------------------------------

    def list_tables(self) -> list[TableInfo]:
        """Every table of every zone with its version, schema, size and last commit."""
        fs = self.filesystem()
        found: list[tuple[str, str]] = []
        with self.translate_errors("list", self.root):
            for zone in ZONES:
                found += [(zone, n) for n in _find_tables(fs, f"{self._fs_root}/{zone}", 2)]
        return [self._info(zone, name) for zone, name in sorted(found)]

    def _info(self, zone: str, name: str) -> TableInfo:
        table = self.table(zone, name)
        assert table is not None
        with self.translate_errors("describe", self.uri(zone, name)):
            adds = pa.table(table.get_add_actions(flatten=True))
            rows = adds["num_records"].to_pylist() if adds.num_rows else []
            if any(r is None for r in rows):  # no stats in the log: ask the files
                rows = [_parquet_rows(table, self)]
            last = table.history(1)[0] if table.version() >= 0 else {}
            ms = last.get("timestamp")
            return TableInfo(
                zone=zone, name=name, uri=self.uri(zone, name), version=table.version(),
                schema=pa.schema(table.schema().to_arrow()),
                partition_columns=list(table.metadata().partition_columns),
                rows=int(sum(rows)), files=adds.num_rows,
                bytes=int(sum(adds["size_bytes"].to_pylist())) if adds.num_rows else 0,
                last_commit=datetime.fromtimestamp(ms / 1000, UTC) if ms else None,
                metadata={k: str(v) for k, v in last.items() if k not in _COMMIT_KEYS},
            )

    def total_bytes(self) -> int:
        """Bytes stored under the lake's root (every version, not only the current one)."""
        fs = self.filesystem()
        with self.translate_errors("measure", self.root):
            return int(fs.du(self._fs_root, total=True)) if fs.exists(self._fs_root) else 0

    # -- filesystems and checks -----------------------------------------------------------------

    @property
    def _fs_root(self) -> str:
        return self.root.removeprefix("s3://")

    def filesystem(self) -> Any:
        """An fsspec filesystem on the lake (s3fs for S3), e.g. for DuckDB's
        ``register_filesystem``; paths are ``bucket/key`` for S3, absolute paths locally."""
        import fsspec

        if not self.is_s3:
            return fsspec.filesystem("file")
        import s3fs

        opts = self.storage_options or {}
        fs = s3fs.S3FileSystem(
            key=opts.get("AWS_ACCESS_KEY_ID"), secret=opts.get("AWS_SECRET_ACCESS_KEY"),
            token=opts.get("AWS_SESSION_TOKEN"), endpoint_url=opts.get("AWS_ENDPOINT_URL"),
            client_kwargs={"region_name": opts["AWS_REGION"]},
            config_kwargs={"connect_timeout": 5, "retries": {"max_attempts": 2}},
            skip_instance_cache=True,
        )
        return fs

    def check(self) -> None:
        """Fail early, with the fix, if the lake cannot be written (bucket, directory)."""
        if self.is_s3:
            problem = self._bucket_problem()
            if problem:
                raise problem
            return
        try:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _local_error(exc, "create", self.root) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise LakeError(f"the lake directory {self.root} is not writable; fix its "
                            "permissions or point TIERLAKE_LAKE_URL elsewhere")

    def _bucket_problem(self) -> LakeError | None:
        endpoint = (self.storage_options or {}).get("AWS_ENDPOINT_URL", "AWS S3")
        try:
            self.filesystem().ls(self.bucket, detail=False)
        except FileNotFoundError:
            return LakeError(
                f"the S3 bucket {self.bucket!r} does not exist at {endpoint}: create it "
                f"(`aws s3 mb s3://{self.bucket}`) or fix the bucket in TIERLAKE_LAKE_URL")
        except PermissionError:
            return LakeError(
                f"access to the S3 bucket {self.bucket!r} is denied: check AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY and the bucket policy (s3:ListBucket, GetObject, PutObject)")
        except Exception as exc:  # noqa: BLE001 - any transport failure means "unreachable"
            return LakeUnavailableError(
                f"cannot reach S3 at {endpoint} for bucket {self.bucket!r} ({exc}); check "
                "AWS_ENDPOINT_URL and that the service is up")
        return None

    @contextmanager
    def translate_errors(self, action: str, uri: str) -> Iterator[None]:
        """Turn storage failures into :class:`LakeError` naming the fix."""
        try:
            yield
        except TierlakeError:
            raise
        except (OSError, DeltaError) as exc:
            if self.is_s3 and (problem := self._bucket_problem()):
                raise problem from exc
            if _no_space(exc) or isinstance(exc, PermissionError) or (
                    "permission denied" in str(exc).lower()):
                raise _local_error(exc, action, uri) from exc
            raise _generic(action, uri, exc) from exc


@dataclass(frozen=True)
class WriteTarget:
    """One table :meth:`Lake.write_many` writes: which columns, how, with what metadata."""

    zone: str
    name: str
    columns: list[str]
    mode: Literal["append", "overwrite"] = "append"
    metadata: dict[str, str] | None = None
    watermark: tuple[str, int] | None = None


_END = object()


class _Abort:
    def __init__(self, cause: BaseException | None) -> None:
        self.cause = cause


class _FeedFailed(Exception):
    """A writer of :meth:`Lake.write_many` failed; the stream stops."""


class _Tee:
    """The queues of :meth:`Lake.write_many`: one per writer, under one lock.

    delta-rs pulls a stream on its runtime's worker threads, so a pull that waits on an
    empty queue holds a worker, and work queued behind it (another writer's) can starve:
    with one bounded queue per writer, a producer blocked on writer A's full queue while
    writer B waits on its empty one deadlocked. Here the producer waits only while EVERY
    queue holds ``ahead`` batches, so a pull never waits on a producer that is itself
    waiting; memory stays bounded by ``ahead`` batches plus the writers' difference in pace.
    """

    def __init__(self, writers: int, ahead: int = 2) -> None:
        self.cond = threading.Condition()
        self.queues: list[deque[Any]] = [deque() for _ in range(writers)]
        self.ended = [False] * writers  # writer i's thread returned (early means it failed)
        self.ahead = ahead

    def put_all(self, items: list[Any], *, wait: bool = True) -> None:
        with self.cond:
            while wait and not any(self.ended) and all(
                    len(q) >= self.ahead for q in self.queues):
                self.cond.wait()
            if wait and any(self.ended):
                raise _FeedFailed("a writer of the stream failed")
            for q, item in zip(self.queues, items, strict=True):
                q.append(item)
            self.cond.notify_all()

    def get(self, i: int) -> Any:
        with self.cond:
            while not self.queues[i]:
                self.cond.wait()
            item = self.queues[i].popleft()
            self.cond.notify_all()
            return item

    def end(self, i: int) -> None:
        with self.cond:
            self.ended[i] = True
            self.queues[i].clear()
            self.cond.notify_all()


class _Feed:
    """One target of :meth:`Lake.write_many`: the thread writing it from its tee queue."""

    def __init__(self, lake: Lake, target: WriteTarget, schema: pa.Schema, tee: _Tee,
                 index: int) -> None:
        self.lake, self.target, self.tee, self.index = lake, target, tee, index
        self.schema = pa.schema([schema.field(c) for c in target.columns])
        self.error: BaseException | None = None
        self.version: int | None = None
        self.thread = threading.Thread(target=self._write, name=f"tierlake-write-{target.name}")

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.tee.get(self.index)
            if item is _END:
                return
            if isinstance(item, _Abort):
                raise item.cause or _FeedFailed("another writer of the same stream failed")
            yield item

    def _write(self) -> None:
        t = self.target
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
        try:
            self.version = self.lake.write(t.zone, t.name, reader, mode=t.mode,
                                           metadata=t.metadata, watermark=t.watermark)
        except BaseException as exc:  # noqa: BLE001 - raised by write_many
            self.error = exc
        finally:
            self.tee.end(self.index)


def _project(data: pa.RecordBatchReader, columns: list[str]) -> pa.RecordBatchReader:
    if data.schema.names == columns:
        return data
    schema = pa.schema([data.schema.field(c) for c in columns])
    return pa.RecordBatchReader.from_batches(schema, (b.select(columns) for b in data))


def _s3_options() -> dict[str, str]:
    env = os.environ
    opts = {"AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(key):
            opts[key] = env[key]
    return opts


# delta-rs pulls batches ahead of its encoder into a queue bounded in batches, not bytes: fed
# 100k-row batches by a fast reader its memory grew by ~250 MB with the table (measured on
# the orders table). Slices of 16k rows (zero-copy) keep that queue small.
WRITE_BATCH_ROWS = 16 * 1024


def _capture(reader: pa.RecordBatchReader, failures: list[BaseException]
             ) -> Iterator[pa.RecordBatch]:
    try:
        for batch in reader:
            for offset in range(0, batch.num_rows, WRITE_BATCH_ROWS):
                yield batch.slice(offset, WRITE_BATCH_ROWS)
    except BaseException as exc:
        failures.append(exc)
        raise


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


def _parquet_rows(table: DeltaTable, lake: Lake) -> int:
    import pyarrow.parquet as pq

    fs = lake.filesystem()
    total = 0
    for uri in table.file_uris():
        with fs.open(uri.removeprefix("s3://"), "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def _no_space(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == 28 or "no space left" in str(exc).lower()


def _local_error(exc: BaseException, action: str, uri: str) -> LakeError:
    if _no_space(exc):
        return LakeError(f"cannot {action} {uri}: the disk is full; free space on it or move "
                         "the lake (TIERLAKE_LAKE_URL). The lake stays at its last good version.")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 13:
        return LakeError(f"cannot {action} {uri}: permission denied; make the lake directory "
                         "writable or point TIERLAKE_LAKE_URL elsewhere")
    return _generic(action, uri, exc)


def _generic(action: str, uri: str, exc: BaseException) -> LakeError:
    return LakeError(f"cannot {action} lake table {uri}: {exc}. The lake stays at its last good "
                     "version; fix the cause and run the extract again.")

