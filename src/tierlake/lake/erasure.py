"""Erasure: a deleted account's personal data leaves the lake, history included.

Deleting an account erases it in the database (``customers.email`` NULL, ``name`` "",
``deleted_at`` set; the orders' ``ship_name``, ``ship_address``, ``ship_city`` and
``ship_postcode`` ""; amounts, dates and ``ship_country`` stay for the books), and the
extract appends those erased rows to ``raw/``. The older rows, in ``raw/db/<table>`` (the
change log) and in the files of older versions of ``current/<table>``, would keep the data
for good; :func:`erase_deleted` removes it, after each extract:

1. The customers whose ``deleted_at`` is newer than the marker (less the extract's
   lookback, so an account deleted by a transaction that committed late is not missed) are
   found in ``raw/db/customers``.
2. For ``orders`` then ``customers``: every change waiting in ``raw/`` is merged into
   ``current/`` (so the rewrite below cannot be taken for new changes); the personal
   columns of those customers' rows are blanked in ``raw/db/<table>`` and in
   ``current/<table>`` by a Delta ``UPDATE`` (only the files holding such rows are
   rewritten); ``current/`` records the raw version it has applied in the same commit.
3. Every data file no longer in the latest version that still holds those customers'
   personal data (the files the UPDATE replaced, and those older versions of ``current/``
   referenced) is deleted at once, without waiting for the vacuum. Time travel to a version
   from before the erasure then fails on those files: that is the point.
4. The marker (``deleted_at`` of the newest erased account, microseconds since 1970) is
   committed last, as the app transaction ``tierlake.erasure`` of ``raw/db/customers``.

Each step is idempotent (an UPDATE matches only rows still holding data, a deleted file is
gone), so a run killed anywhere is finished by the next one: the marker only moves once
everything before it is done.

The clickstream (``raw/clickstream/events``) holds no direct identifier: a ``customer_id``
(whose customer row is erased, so it points at no one), a random visitor and session id,
the page path, search text and the browser's user agent; no e-mail, name, address or IP
address. It is kept as it is (pseudonymous data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog
from deltalake import DeltaTable

from tierlake.lake import current
from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)
MARKER = "tierlake.erasure"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# table -> (the column naming the customer, the personal columns and their erased value)
PERSONAL: dict[str, tuple[str, dict[str, str | None]]] = {
    "orders": ("customer_id", {"ship_name": "", "ship_address": "", "ship_city": "",
                               "ship_postcode": ""}),
    "customers": ("id", {"email": None, "name": ""}),
}


@dataclass
class ErasureInfo:
    """What one erasure did."""

    customers: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # "zone/table" -> rows rewritten
    files_deleted: int = 0
    seconds: float = 0.0


def erase_deleted(lake: Lake, *, lookback_seconds: float = 300.0) -> ErasureInfo:
    """Erase the personal data of the customers deleted since the last erasure."""
    began = time.perf_counter()
    info = ErasureInfo()
    raw = lake.table("raw", "db/customers")
    if raw is None or "deleted_at" not in pa.schema(raw.schema().to_arrow()).names:
        return info
    marker = raw.transaction_version(MARKER)
    where = pc.field("deleted_at").is_valid() & (pc.field("_op") == "u")
    if marker is not None:
        since = EPOCH + timedelta(microseconds=marker - int(lookback_seconds * 1_000_000))
        where &= pc.field("deleted_at") >= pa.scalar(since, pa.timestamp("us", "UTC"))
    with lake.translate_errors("find deleted accounts in", raw.table_uri):
        found = raw.to_pyarrow_dataset().to_table(columns=["id", "deleted_at"], filter=where)
    if not found.num_rows:
        return info
    info.customers = sorted(set(found["id"].to_pylist()))
    newest = pc.max(found["deleted_at"]).as_py()
    done = (newest - EPOCH) // timedelta(microseconds=1)
    # Accounts found again within the lookback were erased by an earlier run: their tables
    # are only visited if a late commit brought their data back.
    fresh = marker is None or done > marker
    for table, (key, columns) in PERSONAL.items():
        _erase_table(lake, table, key, columns, info, fresh=fresh)
    raw = lake.table("raw", "db/customers")
    assert raw is not None
    if (raw.transaction_version(MARKER) or -1) < done:
        with lake.translate_errors("mark the erasure in", raw.table_uri):
            raw.create_write_transaction([], "append", raw.schema(), commit_properties=(
                lake.commit_properties(watermark=(MARKER, done))))
    info.seconds = round(time.perf_counter() - began, 3)
    log.info("lake.erased", customers=len(info.customers), rows=info.rows,
             files_deleted=info.files_deleted, seconds=info.seconds)
    return info


def _erase_table(lake: Lake, table: str, key: str, columns: dict[str, str | None],
                 info: ErasureInfo, *, fresh: bool) -> None:
    raw = lake.table("raw", f"db/{table}")
    if raw is None:
        return
    present = [c for c in columns if c in pa.schema(raw.schema().to_arrow()).names]
    if not present:
        return
    ids = _erased_in_database(lake, table, key, info.customers, present, columns)
    if not ids:
        return
    latest = [t for t in (raw, lake.table("current", table)) if t is not None]
    holds = any(_latest_holds(lake, t, key, ids, present, columns) for t in latest)
    if not holds:
        if fresh:  # a run killed after its UPDATEs: the replaced files may still be there
            for zone, name in (("raw", f"db/{table}"), ("current", table)):
                info.files_deleted += _purge(lake, zone, name, key, ids, present, columns)
        return
    current.compact(lake, table)  # nothing waits: the raw rewrite is not a change to apply
    cur = lake.table("current", table)
    applied = cur.transaction_version(current.applied_app_id(table)) if cur else None
    raw = lake.table("raw", f"db/{table}")
    assert raw is not None
    caught_up = applied == raw.version()
    updates = {c: "NULL" if columns[c] is None else "''" for c in present}
    predicate = _predicate(key, ids, present, columns)
    with lake.translate_errors("erase personal data in", raw.table_uri):
        done = raw.update(updates=updates, predicate=predicate,
                          commit_properties=lake.commit_properties({MARKER: "rewrite"}))
        info.rows[f"raw/db/{table}"] = int(done["num_updated_rows"])
        raw_version = raw.version()
    if cur is not None:
        # current/ records the raw version it has applied in the same commit, so the files
        # the raw UPDATE rewrote are not taken for changes to apply.
        mark = (current.applied_app_id(table), raw_version) if caught_up else None
        with lake.translate_errors("erase personal data in", cur.table_uri):
            done = cur.update(updates=updates, predicate=predicate,
                              commit_properties=lake.commit_properties({MARKER: "rewrite"}, mark))
            info.rows[f"current/{table}"] = int(done["num_updated_rows"])
            if mark and cur.transaction_version(mark[0]) != raw_version:
                cur.create_write_transaction([], "append", cur.schema(),
                                             commit_properties=lake.commit_properties(
                                                 watermark=mark))
    for zone, name in (("raw", f"db/{table}"), ("current", table)):
        info.files_deleted += _purge(lake, zone, name, key, ids, present, columns)


def _predicate(key: str, ids: list[int], present: list[str],
               columns: dict[str, str | None]) -> str:
    holds = " OR ".join(f'"{c}" IS NOT NULL' if columns[c] is None else f"\"{c}\" <> ''"
                        for c in present)
    return f'"{key}" IN ({", ".join(str(int(i)) for i in ids)}) AND ({holds})'


def _holds_data(rows: pa.Table, key: str, ids: list[int], present: list[str],
                columns: dict[str, str | None]) -> bool:
    mine = pc.is_in(rows[key], pa.array(ids, rows.schema.field(key).type))
    holds = _holding(rows, present, columns)
    if holds is None:
        return False
    return bool(pc.any(pc.and_(mine, holds)).as_py())


def _holding(rows: pa.Table, present: list[str], columns: dict[str, str | None]) -> pa.Array | None:
    """Per row: does it hold personal data (a personal column not at its erased value)?"""
    holds = None
    for c in present:
        if c not in rows.column_names:
            continue
        values = rows[c].cast(pa.large_string())  # delta-rs writes string_view
        has = (pc.is_valid(values) if columns[c] is None
               else pc.fill_null(pc.not_equal(values, ""), False))
        holds = has if holds is None else pc.or_(holds, has)
    return holds


def _erased_in_database(lake: Lake, table: str, key: str, ids: list[int], present: list[str],
                        columns: dict[str, str | None]) -> list[int]:
    """The customers among ``ids`` whose rows of ``table`` the database has erased (as the
    current view, changes applied, shows them): the lake erases what the database erased,
    so the two never disagree."""
    if lake.table("current", table) is None:
        return []
    view = current.read(lake, table, [key, *present], where=pc.field(key).isin(ids))
    holds = _holding(view, present, columns)
    kept = set(view.filter(holds)[key].to_pylist()) if holds is not None else set()
    return [i for i in ids if i not in kept]


def _latest_holds(lake: Lake, table: DeltaTable, key: str, ids: list[int], present: list[str],
                  columns: dict[str, str | None]) -> bool:
    """Whether the table's latest version still holds personal data of ``ids``."""
    with lake.translate_errors("look for personal data in", table.table_uri):
        data = table.to_pyarrow_dataset()
        wanted = [c for c in [key, *present] if c in data.schema.names]
        rows = data.to_table(columns=wanted, filter=pc.field(key).isin(ids))
    return _holds_data(rows, key, ids, present, columns)


def _purge(lake: Lake, zone: str, name: str, key: str, ids: list[int], present: list[str],
           columns: dict[str, str | None]) -> int:
    """Delete the files no longer in the latest version that hold the personal data."""
    table = lake.table(zone, name)
    if table is None:
        return 0
    fs = lake.filesystem()
    root = lake.uri(zone, name).removeprefix("s3://")
    deleted = 0
    with lake.translate_errors("delete erased files of", table.table_uri):
        for path in _unreferenced(table):
            full = f"{root}/{path}"
            try:
                with fs.open(full, "rb") as fh:
                    schema = pq.read_schema(fh)
                    wanted = [c for c in [key, *present] if c in schema.names]
                    fh.seek(0)
                    rows = pq.read_table(fh, columns=wanted) if key in wanted else None
            except FileNotFoundError:
                continue
            except (OSError, pa.ArrowInvalid) as exc:  # a partial file of a killed write
                log.warning("lake.erasure_unreadable_file", path=full, error=str(exc))
                continue
            if rows is not None and _holds_data(rows, key, ids, present, columns):
                fs.rm(full)
                deleted += 1
    return deleted


def _unreferenced(table: DeltaTable) -> list[str]:
    """Data files on disk that the latest version does not reference (relative paths)."""
    return list(table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False))
