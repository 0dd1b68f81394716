"""Row rules, identity masks and page filters: how a principal's DuckDB connection is made.

The security of the BI tier is here, and it is done *before* DuckDB sees any data:

1. The engine reads each curated table as Arrow (:meth:`BiEngine`'s cache, per Delta
   version).
2. :func:`secure` makes the principal's copy: rows filtered by their row-level rules
   (QuickSight's row-level security: a rule ``category_slug -> {books}`` keeps the rows whose
   ``category_slug`` is ``books``; see
   https://docs.aws.amazon.com/quicksight/latest/user/restrict-access-to-a-data-set-using-row-level-security.html),
   then every identity column replaced by :data:`~tierlake.bi.model.MASK` for a role that may
   not see who a customer is. Done with pyarrow compute, so no SQL text can undo it.
3. The secured copies go into a DuckDB database of their own, one per set of row rules
   (:class:`SecuredDatabase`), which holds nothing else and no identity at all (a table
   with identity columns is registered by each query's own cursor, as the role's copy),
   with file access and Python replacement scans off and its configuration locked
   (``SET lock_configuration=true``), so a query can neither read a file, nor reach a Python
   variable holding the unsecured table, nor another principal's rows or identities.
4. The page's filters (date range, categories, drill) are views named after the tables over
   the secured relations (:func:`filter_conditions`); their values are dates made by Python
   or strings matched against the known set and quoted, never text from the URL pasted in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tierlake.bi.catalog import IDENTITY_NAMES
from tierlake.bi.model import MASK, Dashboard, Filters, Principal, TableMeta

RulesKey = tuple[tuple[str, tuple[str, ...]], ...]

# Settings of every BI connection: no file, network or extension access, no Python variable
# read by name (DuckDB's replacement scans), no extension loaded on demand.
CONNECTION_CONFIG = {
    "enable_external_access": False,
    "python_enable_replacements": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def rules_key(principal: Principal) -> RulesKey:
    """The principal's rules as a hashable, ordered key (for caches)."""
    return tuple((column, tuple(sorted(values)))
                 for column, values in sorted(principal.rules.items()))


def masked_columns(schema: pa.Schema, meta: TableMeta) -> list[str]:
    return [c for c in schema.names if c in meta.identity_columns or c in IDENTITY_NAMES]


def secure(table: pa.Table, meta: TableMeta, principal: Principal) -> pa.Table:
    """``table`` as ``principal`` may see it: their rows only, identity masked."""
    for column, allowed in sorted(principal.rules.items()):
        if column not in table.column_names:
            continue
        values = pc.cast(table[column], pa.string())
        keep = pc.fill_null(pc.is_in(values, value_set=pa.array(sorted(allowed), pa.string())),
                            False)
        table = table.filter(keep)
    if not principal.sees_identity:
        for column in masked_columns(table.schema, meta):
            index = table.schema.get_field_index(column)
            table = table.set_column(index, pa.field(column, pa.string()),
                                     pa.repeat(pa.scalar(MASK, pa.string()), table.num_rows))
    return table


def literal(value: str) -> str:
    """A SQL string literal (standard quoting: DuckDB has no backslash escapes in them)."""
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _date_literal(day: date) -> str:
    return f"DATE '{day.isoformat()}'"  # a date object's own ISO form: digits and dashes


def drill_columns(dashboard: Dashboard) -> dict[str, str]:
    """The dashboard's drill parameters and the columns they narrow."""
    found: dict[str, str] = {}
    for visual in dashboard.visuals:
        if visual.drill is not None:
            found.setdefault(visual.drill.param, visual.drill.column)
    return found


def filter_conditions(meta: TableMeta, schema: pa.Schema, filters: Filters,
                      dashboard: Dashboard) -> list[str]:
    """The WHERE conditions the page's filters put on one table (none when it lacks the
    columns: e.g. ``product_performance`` has no date and is "all time")."""
    conditions: list[str] = []
    date_column, category_column = meta.date_column, meta.category_column
    if "date" in dashboard.filters and date_column and date_column in schema.names:
        column = _ident(date_column)
        if not pa.types.is_date(schema.field(date_column).type):
            column = f"CAST({column} AS DATE)"
        conditions.append(f"{column} BETWEEN {_date_literal(filters.start)} AND "
                          f"{_date_literal(filters.end)}")
    if ("category" in dashboard.filters and filters.categories and category_column
            and category_column in schema.names):
        values = ", ".join(literal(c) for c in filters.categories)
        conditions.append(f"{_ident(category_column)} IN ({values})")
    columns = drill_columns(dashboard)
    for param, value in filters.drill:
        drilled = columns.get(param)
        if drilled is None or drilled not in schema.names:
            continue
        conditions.append(f"CAST({_ident(drilled)} AS VARCHAR) = {literal(value)}")
    return conditions


def open_database() -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB database: file, network and extension access off, no Python
    variable read by name, UTC, and the configuration locked so that no query can turn any
    of it back on."""
    con = duckdb.connect(":memory:", config=dict(CONNECTION_CONFIG))
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC, as stored
        con.execute("SET lock_configuration=true")
    except BaseException:
        con.close()
        raise
    return con


class SecuredDatabase:
    """The DuckDB database of one set of row rules: it holds only copies filtered by those
    rules of the tables *without* identity columns (the same for every role), as native
    DuckDB tables ``secured_<name>`` (scans of native tables are ~3x faster than of
    registered Arrow, and a query's cursor then costs no registration). Tables with
    identity columns never enter it: each query registers its role's (masked or not) copy
    on its own cursor.

    The copies are replaced when a table's version changes (``CREATE OR REPLACE``: queries
    running on the old one finish on it). Every query runs on its own cursor, where the
    table names are temporary views over the copies (:func:`open_connection`)."""

    def __init__(self) -> None:
        self.database = open_database()
        self.versions: dict[str, int] = {}
        self.lock = threading.Lock()

    def ensure(self, name: str, version: int, make: Callable[[], pa.Table]) -> None:
        """Hold ``name`` at ``version``, made by ``make()`` (the secured Arrow) if not yet."""
        with self.lock:
            if self.versions.get(name) == version:
                return
            table = make()
            con = self.database.cursor()
            try:
                con.register("incoming", table)
                con.execute(f"CREATE OR REPLACE TABLE {_ident('secured_' + name)} AS "
                            "SELECT * FROM incoming")
            finally:
                con.close()
            self.versions[name] = version

    def close(self) -> None:
        self.database.close()


def open_connection(database: duckdb.DuckDBPyConnection, names: Iterable[str],
                    views: Mapping[str, list[str]] | None = None, *,
                    registered: Mapping[str, pa.Table] | None = None
                    ) -> duckdb.DuckDBPyConnection:
    """A cursor of ``database`` (a :class:`SecuredDatabase`'s) where each of ``names`` is a
    temporary view over its secured copy, narrowed by ``views[name]`` (the page's filters;
    none for the SQL page). ``registered`` are copies this cursor alone holds (the role's
    copies of tables with identity), registered as ``secured_<name>``. Temporary views and
    registrations are the cursor's own: no other query sees them."""
    con = database.cursor()
    try:
        for name, table in (registered or {}).items():
            con.register(f"secured_{name}", table)
        for name in names:
            where = (views or {}).get(name) or []
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            con.execute(f"CREATE TEMP VIEW {_ident(name)} AS SELECT * FROM "
                        f"{_ident('secured_' + name)}{clause}")
    except BaseException:
        con.close()
        raise
    return con
