"""A table given as a base plus a change log not merged into it yet (merge-on-read).

The lake keeps each store table as ``current/<table>`` (the base) and appends changes to
``raw/db/<table>``; it MERGEs them into the base only now and then
(:mod:`tierlake.lake.current`). The jobs read such a table as :class:`LoggedTable`, and
:func:`apply_log` gives the Ibis expression of the table with its log applied, on any
engine, by the lake's rules:

* per primary key the latest change wins, by (``updated_at``, delete after upsert,
  ``_extracted_at``), or by ``_extracted_at`` for tables without ``updated_at``;
* a change older than the base's row for its key is ignored (``updated_at`` compared);
* the winners' deletes remove the key, their upserts replace or add the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

UPDATED_AT = "updated_at"
LOG_COLUMNS = ("_op", "_extracted_at", "_batch")


@dataclass(frozen=True)
class LoggedTable:
    """``base`` files with the ``log`` files (the lake's raw change rows) still to apply."""

    base: tuple[str, ...]
    log: tuple[str, ...]
    key: tuple[str, ...]
    schema: pa.Schema  # the base's (for a base without files)

    @property
    def versioned(self) -> bool:
        return UPDATED_AT in self.schema.names


def apply_log(base: ir.Table, log: ir.Table, key: tuple[str, ...] | list[str], *,
              versioned: bool) -> ir.Table:
    """``base`` with the changes of ``log`` applied (see the module docstring)."""
    key = list(key)
    rank = ibis.cases((log["_op"] == "d", 1), else_=0)
    order = ([log[UPDATED_AT].desc(), rank.desc(), log["_extracted_at"].desc()] if versioned
             else [log["_extracted_at"].desc(), rank.desc()])
    ranked = log.mutate(_nth=ibis.row_number().over(group_by=key, order_by=order))
    latest = ranked.filter(ranked["_nth"] == 0)
    if versioned:  # a change older than the base's row loses
        newer = latest.semi_join(base, [*(latest[k] == base[k] for k in key),
                                        base[UPDATED_AT] > latest[UPDATED_AT]])
        latest = latest.anti_join(newer.select(key), key)
    kept = base.anti_join(latest.select(key), key)
    ups = latest.filter(latest["_op"] == "u")
    columns = list(dict.fromkeys([*base.columns, *(c for c in log.columns
                                                   if c not in LOG_COLUMNS)]))
    types = {**{c: log.schema()[c] for c in log.columns}, **base.schema()}
    return ibis.union(_shape(kept, columns, types), _shape(ups, columns, types))


def _shape(table: ir.Table, columns: list[str], types: dict) -> ir.Table:
    """``table`` with exactly ``columns``, typed as ``types`` (missing ones null)."""
    return table.select(**{c: (table[c] if c in table.columns else ibis.null()).cast(types[c])
                           for c in columns})
