"""The BI engine (QuickSight's role): dashboards, filters, drills and the SQL page over the
lake's curated zone, every query in a connection that holds only what the principal may see.

How it is secured: :mod:`tierlake.bi.row_security`. What it reads: :mod:`tierlake.bi.catalog`.
Results are cached by the Delta versions of the tables a visual reads (QuickSight's SPICE
keeps a dataset until its next refresh; here "refresh" is a new Delta version), so redrawing
an unchanged lake runs no query. The lake's versions are looked up at most once a second,
from the newest commit file in each table's ``_delta_log/``.

Thread-safe: the web app calls it from a thread pool. Each call opens its own DuckDB
connection(s); the shared caches are guarded by one lock, and a table is read from the lake
by one thread at a time.
"""

from __future__ import annotations

import math
import re
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import structlog
from pydantic import ValidationError

from tierlake.bi import row_security
from tierlake.bi.catalog import TABLES
from tierlake.bi.figures import build_figure
from tierlake.bi.lake_tables import LakeTables
from tierlake.bi.model import (
    Dashboard,
    Engine,
    FilterError,
    Filters,
    Freshness,
    Principal,
    QueryResult,
    UnknownDashboard,
    Visual,
    VisualResult,
)
from tierlake.bi.query_guard import QueryError, check_select, explain_error
from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)

BUILTIN_DASHBOARDS = Path(__file__).parent / "dashboards"
VISUAL_ROW_LIMIT = 5_000  # rows a visual returns at most (a chart with more is unreadable)
DETAIL_ROW_LIMIT = 1_000
MAX_RANGE_DAYS = 3660
SECURED_DATABASES = 16  # row-rule sets kept (each database holds its secured copies)
SECURED_ENTRIES = 64  # role copies of the tables with identity (small)


def load_dashboards(extra_dir: Path | None = None) -> dict[str, Dashboard]:
    """The built-in dashboards, then those of ``extra_dir`` (same id: replaces)."""
    found: dict[str, Dashboard] = {}
    for folder in (BUILTIN_DASHBOARDS, extra_dir):
        if folder is None:
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"dashboards folder {folder} does not exist; create it or "
                                    "unset TIERLAKE_BI__DASHBOARDS_DIR")
        for path in sorted(folder.glob("*.toml")):
            try:
                dashboard = Dashboard.load(path)
            except (ValidationError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"dashboard file {path}: {exc}") from exc
            unknown = sorted({t for v in dashboard.visuals for t in v.tables} - set(TABLES))
            if unknown:
                raise ValueError(f"dashboard file {path}: unknown tables {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(TABLES))}")
            found[dashboard.id] = dashboard
    return found


class BiEngine:
    """The :class:`~tierlake.bi.model.Engine` over the lake at ``lake_url``."""

    def __init__(self, lake_url: str, *, dashboards_dir: Path | None = None,
                 cache_entries: int = 512, sql_row_limit: int = 10_000,
                 sql_timeout_seconds: float = 10.0, status_path: Path | None = None,
                 refresh_seconds: float | None = None) -> None:
        self.lake = Lake(lake_url)
        self.tables = LakeTables(self.lake, status_path)
        self._dashboards = load_dashboards(dashboards_dir)
        self.cache_entries = cache_entries
        self.sql_row_limit = sql_row_limit
        self.sql_timeout_seconds = sql_timeout_seconds
        self.status_path = status_path
        self.refresh_seconds = refresh_seconds
        self._lock = threading.RLock()
        self._databases: OrderedDict[tuple[Any, ...], row_security.SecuredDatabase] = \
            OrderedDict()
        self._secured: OrderedDict[tuple[Any, ...], pa.Table] = OrderedDict()
        self._results: OrderedDict[tuple[Any, ...], VisualResult] = OrderedDict()
        self._categories: tuple[tuple[int | None, ...], list[tuple[str, str]]] | None = None
        self.stats = {"hits": 0, "misses": 0, "queries": 0}

    @classmethod
    def from_settings(cls, settings: Any) -> BiEngine:
        """The engine of ``settings`` (a :class:`tierlake.config.Settings`): its lake, its
        ``bi`` section, and the pipeline's status file and interval for the freshness badge."""
        from tierlake.pipeline.status import status_path

        bi = settings.bi
        interval = float(settings.pipeline.interval_seconds)
        return cls(settings.resolved_lake_url, dashboards_dir=bi.dashboards_dir,
                   cache_entries=bi.cache_entries, sql_row_limit=bi.sql_row_limit,
                   sql_timeout_seconds=bi.sql_timeout_seconds,
                   status_path=status_path(settings),
                   refresh_seconds=interval if interval > 0 else None)

    # -- dashboards --------------------------------------------------------------------------

    def dashboards(self) -> list[Dashboard]:
        return sorted(self._dashboards.values(), key=lambda d: (d.order, d.title))

    def dashboard(self, dashboard_id: str) -> Dashboard:
        try:
            return self._dashboards[dashboard_id]
        except KeyError:
            raise UnknownDashboard(dashboard_id) from None

    def shown_visuals(self, dashboard: Dashboard, filters: Filters) -> list[Visual]:
        """The visuals the page shows: the non-hidden ones, each replaced by its drill
        target (``drill.to``) while its drill parameter is set, level after level."""
        drilled = {param for param, _ in filters.drill}
        shown = []
        for visual in dashboard.visuals:
            if visual.hidden:
                continue
            seen = {visual.id}
            while (visual.drill is not None and visual.drill.to and visual.drill.param in drilled
                   and visual.drill.to not in seen):
                visual = dashboard.visual(visual.drill.to)
                seen.add(visual.id)
            shown.append(visual)
        return shown

    # -- filters -----------------------------------------------------------------------------

    def parse_filters(self, dashboard: Dashboard, params: Mapping[str, str],
                      principal: Principal | None = None) -> Filters:
        """The URL's parameters as :class:`Filters` (``start``, ``end``, ``category``: slugs
        separated by commas, ``drill.<param>``); defaults: the last ``default_days`` days
        ending at the newest day in the data. With ``principal``, a category they may not
        see is refused with the same message as an unknown one."""
        newest = self.newest_day(dashboard)
        start = _parse_date(params.get("start"), "start")
        end = _parse_date(params.get("end"), "end")
        if end is None:
            end = newest if start is None or start <= newest else start
        if start is None:
            start = end - timedelta(days=dashboard.default_days - 1)
        if start > end:
            raise FilterError(f"the start date {start} is after the end date {end}; swap them "
                              "or pick a new range")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise FilterError(f"the range {start} to {end} spans {(end - start).days + 1} days; "
                              f"pick at most {MAX_RANGE_DAYS} days (about ten years)")
        known = dict(self._all_categories() if principal is None
                     else self.categories(principal))
        categories: tuple[str, ...] = ()
        raw = (params.get("category") or "").strip()
        if raw and "category" in dashboard.filters:
            picked = [c.strip() for c in raw.split(",") if c.strip()]
            categories = tuple(dict.fromkeys(
                self._check_category(c, known) for c in picked))
        drills = row_security.drill_columns(dashboard)
        drill: list[tuple[str, str]] = []
        for key, value in params.items():
            if not key.startswith("drill."):
                continue
            param = key.removeprefix("drill.")
            if param not in drills:
                raise FilterError(f"this dashboard has no drill {_shown(param)}; known: "
                                  f"{', '.join(sorted(drills)) or 'none'} (clear it to go back)")
            drill.append((param, self._check_drill(drills[param], value, known)))
        return Filters(start=start, end=end, categories=categories, drill=tuple(drill))

    def _check_category(self, slug: str, known: Mapping[str, str]) -> str:
        if slug in known:
            return slug
        choices = ", ".join(sorted(known)) if len(known) <= 30 else "the category menu"
        raise FilterError(f"unknown category {_shown(slug)}; pick one of {choices or 'none'} "
                          "(or clear the category filter)")

    def _check_drill(self, column: str, value: str, known: Mapping[str, str]) -> str:
        value = value.strip()
        if not value or len(value) > 200 or any(ord(ch) < 32 for ch in value):
            raise FilterError(f"the drill value {_shown(value)} is not a value of {column}; "
                              "click a point of the chart to drill, or clear the drill")
        if column in _CATEGORY_COLUMNS:
            return self._check_category(value, known)
        return value

    def categories(self, principal: Principal) -> list[tuple[str, str]]:
        allowed = principal.rules.get("category_slug")
        return [(slug, name) for slug, name in self._all_categories()
                if allowed is None or slug in allowed]

    def _all_categories(self) -> list[tuple[str, str]]:
        """Every category (slug, name) with sales or products, computed once per version of
        ``daily_sales`` and ``product_performance`` (both small)."""
        sources = (("daily_sales", "category_name"), ("product_performance", None))
        key = tuple(self.tables.curated_versions().get(t) for t, _ in sources)
        with self._lock:
            if self._categories is not None and self._categories[0] == key:
                return self._categories[1]
        names: dict[str, str] = {}
        for table, name_column in sources:
            loaded = self.tables.load(table)
            if loaded is None or "category_slug" not in loaded.table.column_names:
                continue
            columns = ["category_slug"] + ([name_column] if name_column else [])
            pairs = loaded.table.select(columns).group_by(columns).aggregate([])
            for row in pairs.to_pylist():
                slug = row["category_slug"]
                if slug is not None:
                    names.setdefault(slug, row.get(name_column or "", None) or slug)
        found = sorted(names.items(), key=lambda item: (item[1].lower(), item[0]))
        with self._lock:
            self._categories = (key, found)
        return found

    def newest_day(self, dashboard: Dashboard) -> date:
        """The newest day in the data of the dashboard's dated tables (today when empty)."""
        days = []
        for name in sorted({t for v in dashboard.visuals for t in v.tables}):
            column = TABLES[name].date_column
            day = self.tables.newest(name, column) if column else None
            if day is not None:
                days.append(day)
        return max(days) if days else datetime.now(UTC).date()

    # -- visuals -----------------------------------------------------------------------------

    def run_visual(self, dashboard: Dashboard, visual_id: str, filters: Filters,
                   principal: Principal) -> VisualResult:
        return self._run(dashboard, [self._visual(dashboard, visual_id)], filters, principal)[0]

    def run_dashboard(self, dashboard: Dashboard, filters: Filters,
                      principal: Principal) -> list[VisualResult]:
        return self._run(dashboard, self.shown_visuals(dashboard, filters), filters, principal)

    def detail(self, dashboard: Dashboard, visual_id: str, filters: Filters,
               principal: Principal, value: str) -> VisualResult:
        visual = self._visual(dashboard, visual_id)
        if visual.drill is None or not visual.drill.detail:
            raise KeyError(f"visual {visual_id!r} of {dashboard.id!r} has no drill-to-detail")
        query = dashboard.queries.get(visual.drill.detail)
        if query is None:
            raise KeyError(f"dashboard {dashboard.id!r} has no query {visual.drill.detail!r}")
        checked = self._check_drill(visual.drill.column, value, dict(self.categories(principal)))
        drill = tuple(p for p in filters.drill if p[0] != visual.drill.param)
        narrowed = filters.model_copy(update={"drill": (*drill, (visual.drill.param, checked))})
        tables = tuple(visual.tables) + tuple(t for t in TABLES if _mentions(query, t))
        detail = Visual(id=f"{visual.id}_detail", title=f"{visual.title}: {checked}",
                        kind="table", query=query, tables=tuple(dict.fromkeys(tables)),
                        formats=visual.formats)
        return self._run(dashboard, [detail], narrowed, principal, limit=DETAIL_ROW_LIMIT,
                         label=visual.id)[0]

    @staticmethod
    def _visual(dashboard: Dashboard, visual_id: str) -> Visual:
        try:
            return dashboard.visual(visual_id)
        except KeyError:
            raise KeyError(f"dashboard {dashboard.id!r} has no visual {visual_id!r}") from None

    def _run(self, dashboard: Dashboard, visuals: list[Visual], filters: Filters,
             principal: Principal, *, limit: int = VISUAL_ROW_LIMIT,
             label: str | None = None) -> list[VisualResult]:
        versions = self.tables.versions({t for v in visuals for t in v.tables})
        rkey = (principal.role, row_security.rules_key(principal))
        results: list[VisualResult | None] = []
        todo: list[tuple[int, Visual, tuple[Any, ...]]] = []
        for i, visual in enumerate(visuals):
            key = (dashboard.id, visual.id, visual.query, filters, rkey,
                   tuple((t, versions.get(t)) for t in visual.tables), limit)
            hit = self._cache_get(key)
            results.append(hit.model_copy(update={"cached": True}) if hit else None)
            if hit is None:
                todo.append((i, visual, key))
        if todo:
            with self._connections(dashboard, [v for _, v, _ in todo], filters, principal,
                                   versions) as connect:
                for i, visual, key in todo:
                    result = self._compute(dashboard, visual, filters, connect, versions, limit,
                                           label)
                    self._cache_put(key, result)
                    results[i] = result
        return [r for r in results if r is not None]

    @contextmanager
    def _connections(self, dashboard: Dashboard, visuals: list[Visual], filters: Filters,
                     principal: Principal, versions: Mapping[str, int | None]
                     ) -> Iterator[Any]:
        """``connect(filters)``: the principal's connection for one set of filters, made on
        first use (a kpi with ``compare`` needs a second, for the previous period)."""
        names = sorted({t for v in visuals for t in v.tables if versions.get(t) is not None})
        database, per_role = self._database(principal, names, versions)
        opened: dict[Filters, duckdb.DuckDBPyConnection] = {}

        def connect(wanted: Filters) -> duckdb.DuckDBPyConnection:
            if wanted not in opened:
                views = {name: row_security.filter_conditions(
                    TABLES[name], self.tables.schema(name, versions[name]), wanted, dashboard)
                    for name in names}
                opened[wanted] = row_security.open_connection(database, names, views,
                                                              registered=per_role)
            return opened[wanted]

        try:
            yield connect
        finally:
            for con in opened.values():
                con.close()

    def _compute(self, dashboard: Dashboard, visual: Visual, filters: Filters, connect: Any,
                 versions: Mapping[str, int | None], limit: int,
                 label: str | None) -> VisualResult:
        notes = _notes(dashboard, visual)
        missing = [t for t in visual.tables if versions.get(t) is None]
        base = {"dashboard": dashboard.id, "visual": label or visual.id}
        if missing:
            return VisualResult(**base, columns=(), rows=(), notes=(
                *notes, f"no data yet: {', '.join(missing)} not in the lake; run "
                        "`tierlake pipeline run`"))
        columns, rows, truncated = self._query(connect(filters), visual.query, limit,
                                               f"visual {visual.id!r} of {dashboard.id!r}")
        value = previous = change = None
        if visual.kind == "kpi":
            value = _pick(columns, rows, visual.value)
            if visual.compare:
                _, before, _ = self._query(connect(filters.previous_period()), visual.query, 1,
                                           f"visual {visual.id!r} of {dashboard.id!r}")
                previous = _pick(columns, before, visual.value)
                if isinstance(value, int | float) and isinstance(previous, int | float) \
                        and previous:
                    change = round((value - previous) / abs(previous), 6)
        figure = build_figure(visual, columns, rows)
        return VisualResult(**base, columns=columns, rows=rows, value=value, previous=previous,
                            change=change, figure=figure, truncated=truncated, notes=notes)

    def _query(self, con: duckdb.DuckDBPyConnection, query: str, limit: int, what: str
               ) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...], bool]:
        with self._lock:
            self.stats["queries"] += 1
        with _deadline(con, self.sql_timeout_seconds):
            try:
                cursor = con.execute(query)
                columns = tuple(d[0] for d in cursor.description or ())
                fetched = cursor.fetchmany(limit + 1)
            except duckdb.InterruptException:
                raise QueryError(f"{what} stopped after {self.sql_timeout_seconds:g} s; narrow "
                                 "the date range") from None
            except duckdb.Error as exc:
                raise QueryError(f"{what} failed: {exc}") from exc
        rows = tuple(tuple(_json_value(v) for v in row) for row in fetched[:limit])
        return columns, rows, len(fetched) > limit

    # -- SQL page ----------------------------------------------------------------------------

    def sql(self, text: str, principal: Principal) -> QueryResult:
        """One read-only SELECT over the curated (and pipeline) tables, as ``principal``
        sees them; refused when it writes, reads files or is not one statement."""
        started = time.perf_counter()
        versions = self.tables.versions(set(TABLES))
        names = [n for n in TABLES if versions.get(n) is not None]
        database, per_role = self._database(principal, names, versions)
        con = row_security.open_connection(database, names, registered=per_role)
        try:
            statement = check_select(con, text)
            with _deadline(con, self.sql_timeout_seconds):
                try:
                    cursor = con.execute(statement)
                    columns = tuple(d[0] for d in cursor.description or ())
                    fetched = cursor.fetchmany(self.sql_row_limit + 1)
                except duckdb.InterruptException:
                    raise QueryError(f"the query was stopped after "
                                     f"{self.sql_timeout_seconds:g} s (the SQL page's time "
                                     "limit); aggregate more or filter by day") from None
                except duckdb.Error as exc:
                    raise explain_error(exc) from exc
        finally:
            con.close()
        rows = tuple(tuple(_json_value(v) for v in row)
                     for row in fetched[: self.sql_row_limit])
        elapsed = (time.perf_counter() - started) * 1000
        log.info("bi.sql", principal=principal.email, role=principal.role, rows=len(rows),
                 ms=round(elapsed, 1))
        return QueryResult(columns=columns, rows=rows,
                           truncated=len(fetched) > self.sql_row_limit, elapsed_ms=elapsed)

    def sql_tables(self) -> list[dict[str, Any]]:
        """What the SQL page lists: every table with its description, columns and types, and
        whether it has data yet."""
        versions = self.tables.versions(set(TABLES))
        found = []
        for name, meta in TABLES.items():
            loaded = self.tables.table(name, versions.get(name))
            found.append({"name": name, "description": meta.description,
                          "date_column": meta.date_column,
                          "category_column": meta.category_column,
                          "identity_columns": list(meta.identity_columns),
                          "version": versions.get(name),
                          "columns": [] if loaded is None else
                          [(f.name, str(f.type)) for f in loaded.schema]})
        return found

    # -- freshness ---------------------------------------------------------------------------

    def freshness(self) -> Freshness:
        """As of the newest curated commit (when the last pipeline run wrote its results)."""
        versions = self.tables.curated_versions()
        times = self.tables.commit_times()
        as_of = max(times.values()) if times else None
        age = max(0.0, time.time() - as_of) if as_of is not None else None
        upcoming = None
        if self.refresh_seconds is not None and age is not None:
            upcoming = max(0.0, self.refresh_seconds - age)
        return Freshness(as_of=as_of, age_seconds=age, next_refresh_seconds=upcoming,
                         tables=dict(versions))

    def close(self) -> None:
        """Close the engine's DuckDB databases (queries running now are stopped)."""
        with self._lock:
            databases = list(self._databases.values())
            self._databases.clear()
        for database in databases:
            database.close()

    def cache_clear(self, *, copies: bool = False) -> None:
        """Forget every cached visual result; with ``copies``, also every principal's secured
        copies (remade on next use). The curated tables stay in memory, read once per
        version."""
        with self._lock:
            self._results.clear()
            if copies:
                self._databases.clear()
                self._secured.clear()

    # -- tables, versions and caches ---------------------------------------------------------

    def _database(self, principal: Principal, names: list[str],
                  versions: Mapping[str, int | None]
                  ) -> tuple[duckdb.DuckDBPyConnection, dict[str, pa.Table]]:
        """Where ``principal``'s queries over ``names`` run: the database of their row rules
        (shared by every role with the same rules: it holds the secured copies of the tables
        without identity columns, as native tables, made now if missing or older), and the
        role's own copies of the tables with identity (small; registered per query)."""
        key = row_security.rules_key(principal)
        with self._lock:
            store = self._databases.get(key)
            if store is None:
                store = self._databases[key] = row_security.SecuredDatabase()
            self._databases.move_to_end(key)
            while len(self._databases) > SECURED_DATABASES:
                self._databases.popitem(last=False)  # closed once its last cursor is gone
        per_role: dict[str, pa.Table] = {}
        for name in names:
            version = versions[name]
            if version is None:
                continue
            if row_security.masked_columns(self.tables.schema(name, version), TABLES[name]):
                per_role[name] = self._secured_copy(name, version, principal)
            else:  # the same for every role: rules only
                store.ensure(name, version, partial(self._secure, name, version, principal))
        return store.database, per_role

    def _secured_copy(self, name: str, version: int, principal: Principal) -> pa.Table:
        key = (name, version, principal.role, row_security.rules_key(principal))
        with self._lock:
            if key in self._secured:
                self._secured.move_to_end(key)
                return self._secured[key]
        secured = self._secure(name, version, principal)
        with self._lock:
            self._secured[key] = secured
            while len(self._secured) > SECURED_ENTRIES:
                self._secured.popitem(last=False)
        return secured

    def _secure(self, name: str, version: int, principal: Principal) -> pa.Table:
        """``principal``'s copy of table ``name`` at ``version`` (row rules, masks)."""
        table = self.tables.table(name, version)
        if table is None:
            raise KeyError(name)
        began = time.perf_counter()
        secured = row_security.secure(table, TABLES[name], principal)
        log.debug("bi.secured", table=name, version=version, role=principal.role,
                  rows=secured.num_rows, seconds=round(time.perf_counter() - began, 3))
        return secured

    def _cache_get(self, key: tuple[Any, ...]) -> VisualResult | None:
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                self.stats["hits"] += 1
            else:
                self.stats["misses"] += 1
            return hit

    def _cache_put(self, key: tuple[Any, ...], result: VisualResult) -> None:
        if self.cache_entries <= 0:
            return
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.cache_entries:
                self._results.popitem(last=False)


_CATEGORY_COLUMNS = {m.category_column for m in TABLES.values() if m.category_column}


@contextmanager
def _deadline(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt the connection's query after ``seconds`` (DuckDB then raises
    ``InterruptException``)."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _parse_date(value: str | None, which: str) -> date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"the {which} date {_shown(text)} is not a date; use YYYY-MM-DD, "
                          "e.g. 2026-11-01") from None


def _shown(value: str) -> str:
    """A URL value quoted for a message, cut short (the page escapes it as any text)."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _mentions(query: str, table: str) -> bool:
    return re.search(rf"\b{re.escape(table)}\b", query) is not None


def _notes(dashboard: Dashboard, visual: Visual) -> tuple[str, ...]:
    if "date" not in dashboard.filters:
        return ()
    if any(TABLES[t].date_column for t in visual.tables):
        return ()  # a dated table sets the period; the others only name things
    return tuple(f"all time: {t} has no date" for t in visual.tables)


def _pick(columns: tuple[str, ...], rows: tuple[tuple[Any, ...], ...], name: str | None) -> Any:
    if not rows or name is None:
        return None
    try:
        return rows[0][columns.index(name)]
    except ValueError:
        raise QueryError(f"the kpi's query gives no column {name!r} (it gives "
                         f"{', '.join(columns)})") from None


def _json_value(value: Any) -> Any:
    """A DuckDB value as JSON has it: dates and times as ISO strings, decimals as floats,
    NaN and infinities as null."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _implements(engine: BiEngine) -> Engine:
    return engine  # mypy checks here that BiEngine is the model's Engine
