"""One Arrow type per column, whatever the engine: the type mapping of the database source.

ConnectorX returns what each driver has (MariaDB ``TINYINT(1)`` as int8, ``INT`` as int32,
SQLite text for a computed timestamp, ...). Every batch is normalised, with Arrow compute
(no per-row Python), to:

* timestamps -> ``timestamp[us, tz=UTC]`` (naive values are UTC by the schema's rule; SQLite's
  text ``YYYY-MM-DD HH:MM:SS.ffffff`` is parsed);
* booleans (``BOOLEAN``, MySQL's ``TINYINT(1)``, SQLite 0/1) -> ``bool``;
* integers -> ``int64``; floats -> ``float64``; dates -> ``date32``;
* decimals -> ``decimal128(p, s)`` as declared; text -> ``string``; bytes -> ``binary``.

Anything else (``TIME``, intervals, arrays) has no Delta Lake type: the column is refused
with a :class:`SourceError` naming the table, the column and the fix (``extract.exclude``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import types as sqltypes

from tierlake.lake.errors import SourceError

UTC_US = pa.timestamp("us", tz="UTC")
Convert = Callable[[pa.Array], pa.Array]


@dataclass(frozen=True)
class ColumnPlan:
    """How one source column becomes a lake column."""

    name: str
    type: pa.DataType
    convert: Convert


def plan_columns(table: str, schema: pa.Schema, declared: dict[str, Any]) -> list[ColumnPlan]:
    """A plan per column of ``schema`` (what ConnectorX returns), using the declared
    SQLAlchemy types (from reflection) where the Arrow type alone is ambiguous."""
    return [_plan(table, f.name, f.type, declared.get(f.name)) for f in schema]


def lake_schema(plans: list[ColumnPlan]) -> pa.Schema:
    return pa.schema([pa.field(p.name, p.type) for p in plans])


def normalize(table: str, batch: pa.RecordBatch, plans: list[ColumnPlan]) -> pa.RecordBatch:
    arrays = []
    for plan, column in zip(plans, batch.columns, strict=True):
        try:
            arrays.append(plan.convert(column))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceError(
                f"{table}.{plan.name}: a value cannot be read as {plan.type} ({exc}); fix the "
                f"data or leave the column out with extract.exclude (add '{table}.{plan.name}' "
                "to TIERLAKE_EXTRACT__EXCLUDE)") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=lake_schema(plans))


def _cast(target: pa.DataType) -> Convert:
    return lambda a: a if a.type == target else pc.cast(a, target)


def to_utc(a: pa.Array) -> pa.Array:
    t = a.type
    if pa.types.is_timestamp(t):
        return pc.cast(a, UTC_US) if t.tz else pc.cast(pc.cast(a, pa.timestamp("us")), UTC_US)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:  # "2025-01-02 03:04:05.123456", as SQLAlchemy stores it on SQLite
            return pc.cast(pc.cast(a, pa.timestamp("us")), UTC_US)
        except pa.ArrowInvalid:  # with an explicit offset ("...Z", "+02:00")
            return pc.cast(a, UTC_US)
    return pc.cast(a, UTC_US)


def _to_bool(a: pa.Array) -> pa.Array:
    if pa.types.is_boolean(a.type):
        return a
    if pa.types.is_integer(a.type):
        return pc.not_equal(a, 0)
    return pc.cast(a, pa.bool_())


def _is_mysql_bool(declared: Any) -> bool:
    return type(declared).__name__ == "TINYINT" and getattr(declared, "display_width", 0) == 1


def _plan(table: str, name: str, t: pa.DataType, declared: Any) -> ColumnPlan:
    def plan(target: pa.DataType, convert: Convert | None = None) -> ColumnPlan:
        return ColumnPlan(name, target, convert or _cast(target))

    if isinstance(declared, sqltypes.DateTime) or pa.types.is_timestamp(t):
        return plan(UTC_US, to_utc)
    if isinstance(declared, sqltypes.Boolean) or _is_mysql_bool(declared) or pa.types.is_boolean(t):
        return plan(pa.bool_(), _to_bool)
    if isinstance(declared, sqltypes.Date) or pa.types.is_date(t):
        return plan(pa.date32())
    if pa.types.is_integer(t):
        return plan(pa.int64())
    if pa.types.is_floating(t):
        return plan(pa.float64())
    if pa.types.is_decimal(t):
        precision = getattr(declared, "precision", None) or t.precision
        scale = getattr(declared, "scale", None)
        scale = t.scale if scale is None else scale
        if precision <= 38:
            return plan(pa.decimal128(precision, scale))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if isinstance(declared, sqltypes.Integer):  # SQLite keeps what it is given
            return plan(pa.int64())
        return plan(pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return plan(pa.binary())
    if pa.types.is_null(t):
        if isinstance(declared, sqltypes.Integer):
            return plan(pa.int64())
        if isinstance(declared, sqltypes.Float):
            return plan(pa.float64())
        return plan(pa.string())
    raise SourceError(
        f"{table}.{name}: type {t} (declared {declared}) has no Delta Lake equivalent, so the "
        f"table {table!r} cannot be copied; leave the column out with extract.exclude (add "
        f"'{table}.{name}' to TIERLAKE_EXTRACT__EXCLUDE) or change its type in the database")
