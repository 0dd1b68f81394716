"""The lake tables the jobs read, and the columns each is expected to have.

The lake's ``current/<table>`` tables hold exactly the store database's rows and columns
(:mod:`tierlake.data.schema`) minus ``customers.password_hash``; ``auth_sessions`` and
``deleted_rows`` are not extracted. ``clickstream`` holds the fields of a
:class:`~tierlake.events.ClickEvent` plus ``dt`` (delivery date) and
``_source_file``. Types: timestamps ``timestamp[us, tz=UTC]``, money integer cents.

Used to explain a failed job: which input lacks which column.
"""

from __future__ import annotations

from tierlake.data.schema import Base
from tierlake.events import ClickEvent

NOT_IN_LAKE = {"auth_sessions", "deleted_rows"}
EXCLUDED_COLUMNS = {"customers": {"password_hash"}}


def expected_columns() -> dict[str, tuple[str, ...]]:
    """Table name -> the columns the lake gives it."""
    tables = {
        name: tuple(c.name for c in table.columns
                    if c.name not in EXCLUDED_COLUMNS.get(name, set()))
        for name, table in Base.metadata.tables.items() if name not in NOT_IN_LAKE
    }
    tables["clickstream"] = (*ClickEvent.__annotations__, "dt", "_source_file")
    from tierlake.lake.sources.accesslogs import LAKE_SCHEMA as ACCESS_LOGS

    tables["lb_access_logs"] = tuple(ACCESS_LOGS.names)
    return tables


def missing_columns(name: str, columns: list[str] | tuple[str, ...]) -> list[str]:
    """Columns the lake table ``name`` should have but ``columns`` lacks."""
    have = set(columns)
    return [c for c in expected_columns().get(name, ()) if c not in have]
