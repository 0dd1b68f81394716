"""The ``current`` zone: each database table with its change log applied (merge-on-read).

A table's current view is ``current/<table>`` (the *base*) with the ``raw/db/<table>``
versions committed after the one the base has applied (the *pending* changes) applied on
top. The base's app transaction ``tierlake.current.<table>`` is that raw version, committed
in the same commit as the rows.

An extract appends the changes to raw and, as long as they are few, stops there: readers
apply them (:func:`read`, :func:`read_keys`; the jobs through
:mod:`tierlake.analytics.merge_on_read`). Once the pending rows reach ``compact_ratio`` of
the base (or ``max_pending_commits`` raw commits wait), :func:`apply_changes` MERGEs
them into the base (*compaction*); ``compact_ratio=0`` merges on every run. So that a
plain Delta reader of ``current/`` (which applies nothing) is stale by a known bound, a
change that has waited ``max_staleness_seconds`` is merged too, by the next extract,
whether or not that extract found anything new for the table. A MERGE
rewrites every file holding a changed row, so changes spread over a table cost a rewrite
of all of it; logged, they cost their own size (docs/benchmarks.md).

Applying is idempotent and the same whether a reader or the MERGE does it, so compacting
never changes what readers see:

* the changes are reduced to the latest per primary key, ordered by (``updated_at``, delete
  after upsert, ``_extracted_at``); for tables without ``updated_at`` by ``_extracted_at``;
* an upsert never replaces a newer row (``s.updated_at >= t.updated_at``) and a delete only
  removes a row not changed after it (``t.updated_at <= s.updated_at``), so re-applying an
  old version, or a delete of a key the database has since reused, does no harm.

A process killed between the raw commit and the MERGE leaves the changes pending: readers
still see them, and the next compaction merges them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.schema import Field

from tierlake.config import ExtractConfig
from tierlake.lake.errors import LakeError
from tierlake.lake.fanout import WriteTarget
from tierlake.lake.files import writer_properties
from tierlake.lake.tables import Tables as Lake

META = ("_op", "_extracted_at", "_batch")
UPDATED_AT = "updated_at"
PRIMARY_KEY = "tierlake.primary_key"  # raw commits' metadata: the key, as a JSON list
# Readers open one file (at least) per raw commit: past this many, merge whatever the ratio.


def applied_app_id(table: str) -> str:
    return f"tierlake.current.{table}"


def key_metadata(pk: list[str]) -> dict[str, str]:
    """The commit metadata naming a raw table's primary key (read back by :func:`pending`)."""
    return {PRIMARY_KEY: json.dumps(list(pk))}


@dataclass
class ApplyInfo:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    version: int | None = None  # current's version afterwards
    pending: int = 0  # raw rows logged and not merged into the base yet


@dataclass(frozen=True)
class Pending:
    """The raw changes of one table that its base (``current/``) has not applied."""

    raw: DeltaTable
    applied: int  # the raw version the base has applied (-1: none)
    paths: tuple[str, ...]  # raw files (relative paths) committed after it
    uris: tuple[str, ...]  # the same files as URIs (local paths on a local lake)
    rows: int
    pk: list[str] | None  # from the newest raw commit's metadata
    oldest: datetime | None = None  # when the oldest of these files was written

    def age_seconds(self, now: datetime | None = None) -> float:
        """How long the oldest waiting change has waited (0 without any)."""
        if self.oldest is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - self.oldest).total_seconds())

    @property
    def latest(self) -> int:
        return self.raw.version()

    @property
    def commits(self) -> int:
        return self.latest - self.applied

    @property
    def versioned(self) -> bool:
        return UPDATED_AT in self.columns

    @property
    def columns(self) -> list[str]:
        """The raw table's source columns (without the extract's own)."""
        return [n for n in pa.schema(self.raw.schema().to_arrow()).names if n not in META]

    def dataset(self) -> ds.FileSystemDataset:
        whole = self.raw.to_pyarrow_dataset()
        wanted = set(self.paths)
        fragments = [f for f in whole.get_fragments() if f.path in wanted]
        return ds.FileSystemDataset(fragments, whole.schema, whole.format, whole.filesystem)

    def key(self, table: str) -> list[str]:
        if not self.pk:
            raise LakeError(f"raw/db/{table} has changes not merged into current/{table} and "
                            "its commits do not name the primary key; run `tierlake pipeline "
                            "extract` once more (it merges them)")
        return self.pk


def pending(lake: Lake, table: str, cur: DeltaTable | None = None) -> Pending | None:
    """The changes ``current/<table>`` has not applied, or None without a raw table."""
    raw = lake.table("raw", f"db/{table}")
    if raw is None:
        return None
    if cur is None:
        cur = lake.table("current", table)
    applied = cur.transaction_version(applied_app_id(table)) if cur is not None else None
    applied = -1 if applied is None else applied
    with lake.translate_errors("read the change log of", lake.uri("raw", f"db/{table}")):
        adds = pa.table(raw.get_add_actions(flatten=True))
        paths = adds["path"].to_pylist() if adds.num_rows else []
        new = set(paths)
        if applied >= 0 and raw.version() > applied:
            old = _version(raw, applied, lake)
            if old is not None:
                new -= set(pa.table(old.get_add_actions()).column("path").to_pylist())
        elif raw.version() <= applied:
            new = set()
        rows = [r for p, r in zip(paths, adds["num_records"].to_pylist() if paths else [],
                                  strict=True) if p in new]
        chosen = tuple(p for p in paths if p in new)
        times = [t for p, t in zip(paths, adds["modification_time"].to_pylist() if paths
                                   else [], strict=True) if p in new and t is not None]
        pk = json.loads(raw.history(1)[0].get(PRIMARY_KEY, "null")) if new else None
    root = lake.uri("raw", f"db/{table}")  # as file_uris() gives them (unpartitioned table)
    return Pending(raw=raw, applied=applied, paths=chosen,
                   uris=tuple(f"{root}/{p}" for p in chosen),
                   rows=int(sum(r or 0 for r in rows)), pk=pk,
                   oldest=_utc(min(times)) if times else None)


def _version(raw: DeltaTable, version: int, lake: Lake) -> DeltaTable | None:
    """``raw`` as of ``version``, or None if that version's log is gone (cleaned up after a
    checkpoint: then every raw file counts as pending, which is idempotent). Any other
    failure (a storage timeout, no access) is raised: it is not "nothing applied"."""
    try:
        return DeltaTable(raw.table_uri, version=version, storage_options=lake.storage_options)
    except TableNotFoundError:  # "No files in log segment": the log was cleaned up
        return None
    except DeltaError as exc:  # an OSError (timeout, no access) goes to translate_errors
        text = str(exc).lower()
        if "log segment" in text and "version" in text:
            return None  # the log is cut just after a checkpoint ("LogSegment end version")
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LakeError(f"cannot read version {version} of the change log {raw.table_uri} "
                        f"(to find the changes current/ has not applied): {cause}. Check the "
                        "lake's storage (reachable, readable), then run again.") from exc


def _utc(value: datetime | int) -> datetime:
    """A file's modification time (milliseconds since 1970, or a datetime) in UTC."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def base_rows(cur: DeltaTable) -> int:
    adds = pa.table(cur.get_add_actions(flatten=True))
    return int(sum(r or 0 for r in adds["num_records"].to_pylist())) if adds.num_rows else 0


def apply_changes(lake: Lake, table: str, pk: list[str], *, versioned: bool,
                  policy: ExtractConfig | None = None) -> ApplyInfo:
    """MERGE the pending changes into ``current/<table>``, unless ``policy`` (the
    ``[extract]`` settings) leaves them to readers: fewer than ``compact_ratio`` of its rows,
    at most ``max_pending_commits`` commits, the oldest younger than
    ``max_staleness_seconds`` (see the module docstring). No policy: merge now."""
    cur = lake.table("current", table)
    todo = pending(lake, table, cur)
    if todo is None:
        return ApplyInfo()
    if not todo.paths:
        return ApplyInfo(version=cur.version() if cur is not None else None)
    # Left to readers only when they can apply it: they need the key from raw's metadata
    # (a lake written before merge-on-read does not name it).
    if (cur is not None and policy is not None and policy.compact_ratio > 0
            and todo.pk is not None and todo.commits <= policy.max_pending_commits
            and (policy.max_staleness_seconds is None
                 or todo.age_seconds() < policy.max_staleness_seconds)
            and todo.rows < policy.compact_ratio * base_rows(cur)):
        return ApplyInfo(version=cur.version(), pending=todo.rows)
    latest, app = todo.latest, applied_app_id(table)
    meta = {"tierlake.raw_version": str(latest)}
    with lake.translate_errors("apply changes to", lake.uri("current", table)):
        changes = todo.dataset()
        columns = [n for n in changes.schema.names if n not in META]
        if cur is None and latest == 0:  # the first full load: stream it, keys are unique
            counted = _Counted(changes.scanner(columns=columns, filter=pc.field("_op") == "u"))
            version = lake.write("current", table, counted.reader(), mode="overwrite",
                                 metadata=meta, watermark=(app, latest))
            return ApplyInfo(inserted=counted.rows, version=version)
        latest_rows = latest_per_key(changes.to_table(), pk, versioned=versioned)
        if cur is None:
            upserts = latest_rows.filter(pc.field("_op") == "u").select(columns)
            version = lake.write("current", table, upserts, mode="overwrite", metadata=meta,
                                 watermark=(app, latest))
            return ApplyInfo(inserted=upserts.num_rows, version=version)
        _add_new_columns(cur, latest_rows.select(columns).schema)
        metrics = _merge(lake, cur, latest_rows.select([*columns, "_op"]), pk, versioned,
                         meta, (app, latest))
        return ApplyInfo(inserted=metrics["num_target_rows_inserted"],
                         updated=metrics["num_target_rows_updated"],
                         deleted=metrics["num_target_rows_deleted"], version=cur.version())


def compact(lake: Lake, table: str) -> ApplyInfo:
    """MERGE every pending change of ``table`` into ``current/<table>`` now."""
    todo = pending(lake, table)
    if todo is None or not todo.paths:
        cur = lake.table("current", table)
        return ApplyInfo(version=cur.version() if cur is not None else None)
    return apply_changes(lake, table, todo.key(table), versioned=todo.versioned)


def first_load(table: str, columns: list[str]) -> WriteTarget:
    """``current/<table>`` written side by side with the first ``raw/db/<table>`` commit
    (raw version 0) from the same read, instead of read back from raw afterwards.

    The two commits are not one: if current commits and raw does not, the next run finds no
    raw table, loads again and overwrites current; if raw commits and current does not,
    :func:`apply_changes` loads current from raw.
    """
    return WriteTarget("current", table, columns, mode="overwrite",
                       metadata={"tierlake.raw_version": "0"}, watermark=(applied_app_id(table), 0))


def latest_per_key(changes: pa.Table, pk: list[str], *, versioned: bool) -> pa.Table:
    """One row per primary key: the latest change (see the module docstring)."""
    rank = pc.if_else(pc.equal(changes["_op"], "d"), 1, 0)
    order = [UPDATED_AT, "_rank", "_extracted_at"] if versioned else ["_extracted_at", "_rank"]
    t = changes.append_column("_rank", rank).sort_by([(c, "ascending") for c in [*pk, *order]])
    t = t.append_column("_i", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    last = t.group_by(pk, use_threads=False).aggregate([("_i", "max")])
    return t.take(last["_i_max"]).drop_columns(["_rank", "_i"])


def read(lake: Lake, table: str, columns: list[str] | None = None,
         where: pc.Expression | None = None) -> pa.Table:
    """The current view of ``table``: its base with the pending changes applied."""
    cur = lake.table("current", table)
    if cur is None:
        raise LakeError(f"lake table {lake.uri('current', table)} does not exist yet; run "
                        "`tierlake pipeline extract` first")
    return _view(lake, table, cur, columns, where)


@dataclass(frozen=True)
class Snapshot:
    """``current/<table>`` and its pending changes as of one moment, for several reads."""

    cur: DeltaTable
    todo: Pending | None


def snapshot(lake: Lake, table: str) -> Snapshot | None:
    cur = lake.table("current", table)
    return None if cur is None else Snapshot(cur, pending(lake, table, cur))


def read_keys(lake: Lake, table: str, pk: list[str], *, versioned: bool,
              where: pc.Expression | None = None,
              snap: Snapshot | None = None) -> pa.Table | None:
    """Primary keys (and ``updated_at``) of the current view, or None if there is none.
    ``snap``: the table as read before (else it is read now)."""
    snap = snap or snapshot(lake, table)
    if snap is None:
        return None
    return _view(lake, table, snap.cur, [*pk, UPDATED_AT] if versioned else list(pk), where,
                 snap.todo)


def _view(lake: Lake, table: str, cur: DeltaTable, columns: list[str] | None,
          where: pc.Expression | None, todo: Pending | None = None) -> pa.Table:
    with lake.translate_errors("read", lake.uri("current", table)):
        base = cur.to_pyarrow_dataset()
        todo = todo or pending(lake, table, cur)
        if todo is None or not todo.paths:
            return base.to_table(columns=columns, filter=where)
        pk = todo.key(table)
        versioned = todo.versioned
        guard = [*pk, UPDATED_AT] if versioned else list(pk)
        names = columns or list(dict.fromkeys([*base.schema.names, *todo.columns]))
        changes = todo.dataset()
        logged = set(changes.schema.names)
        wanted = [c for c in dict.fromkeys([*guard, *names]) if c in logged]
        win = latest_per_key(changes.to_table(columns=[*wanted, "_op", "_extracted_at"]), pk,
                             versioned=versioned)
        if versioned and win.num_rows:  # the MERGE's guards: a change older than the
            # base's row loses. Only base rows newer than the oldest change can win, so the
            # files' updated_at statistics skip the others (changes are recent, bases old).
            near = pc.field(UPDATED_AT) > pc.min(win[UPDATED_AT])
            if len(pk) == 1:
                near &= pc.field(pk[0]).isin(win[pk[0]])
            newer = base.to_table(columns=guard, filter=near).rename_columns(
                [*pk, "_base_at"]).join(win.select(guard), keys=pk, join_type="inner")
            newer = newer.filter(pc.greater(newer["_base_at"], newer[UPDATED_AT])).select(pk)
            win = win.join(newer, keys=pk, join_type="left anti")
        # (base - changed keys) + upserts, filtered: the same as filtering the whole view
        kept = base.to_table(columns=[c for c in dict.fromkeys([*pk, *names])
                                      if c in base.schema.names], filter=where)
        kept = kept.join(win.select(pk), keys=pk, join_type="left anti")
        ups = win.filter(pc.equal(win["_op"], "u")).drop_columns(["_op", "_extracted_at"])
        if where is not None:
            ups = ups.filter(where)
        both = pa.concat_tables([kept, ups], promote_options="permissive")
        return both.select([c for c in names if c in both.column_names])


def _add_new_columns(cur: DeltaTable, source: pa.Schema) -> None:
    have = set(pa.schema(cur.schema().to_arrow()).names)
    new = [Field.from_arrow(f) for f in source if f.name not in have]
    if new:
        cur.alter.add_columns(new)


def _merge(lake: Lake, cur: DeltaTable, source: pa.Table, pk: list[str], versioned: bool,
           meta: dict[str, str], watermark: tuple[str, int]) -> dict[str, int]:
    on = " AND ".join(f't."{k}" = s."{k}"' for k in pk)
    newer = ' AND s."updated_at" >= t."updated_at"' if versioned else ""
    older = ' AND t."updated_at" <= s."updated_at"' if versioned else ""
    values = {c: f's."{c}"' for c in source.schema.names if c != "_op"}
    return (
        # The changes are already in memory (bounded by the change volume, not the table):
        # not streaming them lets delta-rs prune target files by the changes' key range and
        # plan the join on a known size, ~3x faster than streamed (docs/benchmarks.md).
        cur.merge(source, on, source_alias="s", target_alias="t", streamed_exec=False,
                  writer_properties=writer_properties(pa.schema(cur.schema().to_arrow())),
                  commit_properties=lake.commit_properties(meta, watermark))
        .when_matched_delete(predicate=f"s._op = 'd'{older}")
        .when_matched_update(updates=values, predicate=f"s._op = 'u'{newer}")
        .when_not_matched_insert(updates=values, predicate="s._op = 'u'")
        .execute()
    )


class _Counted:
    """A scanner's batches as a RecordBatchReader that counts the rows it hands out."""

    def __init__(self, scanner: ds.Scanner) -> None:
        self.scanner = scanner
        self.rows = 0

    def reader(self) -> pa.RecordBatchReader:
        def batches():
            for batch in self.scanner.to_batches():
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(self.scanner.projected_schema, batches())
