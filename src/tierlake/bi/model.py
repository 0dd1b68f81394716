"""The BI tier's shared vocabulary: dashboards as data, who is looking, and what they asked.

A dashboard is a TOML file (``bi/dashboards/<id>.toml``, or one in ``bi.dashboards_dir``)
that declares its visuals, each a SQL query over the lake's curated tables, so adding a
visual is adding a few lines (QuickSight keeps analyses as JSON definitions the same way:
https://docs.aws.amazon.com/quicksight/latest/APIReference/API_DashboardVersionDefinition.html).

The queries never name a filter or a user. The engine runs each of them in a DuckDB
connection where every curated table is a *view* that already applies, in this order:

1. the principal's row-level rules (QuickSight's row-level security dataset: a user sees
   only the rows whose rule column holds one of their allowed values),
2. identity masking for roles that may not see who a customer is (names, e-mails,
   addresses become ``masked``),
3. the page's filters (date range on the table's date column, categories on its category
   column), as declared per table in ``TableMeta``.

So a visual, the SQL page and every export see the same rows and the same masks, and a
query cannot forget a rule.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["admin", "analyst"]
VisualKind = Literal["kpi", "line", "bar", "table", "heatmap", "funnel", "pie"]
Format = Literal["number", "money", "percent", "seconds", "milliseconds", "text", "date"]

MASK = "masked"  # what a masked identity column reads as, in pages, JSON, CSV and SQL


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableMeta(Spec):
    """How filters, rules and masks apply to one curated table."""

    name: str
    date_column: str | None = None  # the page's date range filters this column
    category_column: str | None = None  # the category filter and category rules
    identity_columns: tuple[str, ...] = ()  # masked for roles without identity access
    description: str = ""


class Drill(Spec):
    """Clicking a point of a visual narrows the page to it.

    ``column`` is the query's column whose value the click carries; ``param`` the URL
    parameter it sets (``drill.<param>=<value>``); visuals whose queries read
    ``{drill.<param>}``-free views are narrowed by the engine when the table has that column.
    ``to`` names the visual shown instead (the next level: category -> product); ``detail``
    names a query that lists the rows behind the point (drill-to-detail).
    """

    column: str
    param: str
    to: str | None = None
    detail: str | None = None


class Visual(Spec):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    kind: VisualKind
    query: str  # SQL over the curated tables (the views described above)
    description: str = ""
    # kpi: the column holding the value; also compared with the previous period of the
    # same length when ``compare`` is set (the date filter is moved back by its length).
    value: str | None = None
    compare: bool = False
    # charts: the x column, the y columns, an optional series column, and formats.
    x: str | None = None
    y: tuple[str, ...] = ()
    series: str | None = None
    format: Format = "number"
    formats: dict[str, Format] = Field(default_factory=dict)  # per column
    drill: Drill | None = None
    hidden: bool = False  # only shown as a drill target
    width: Literal[1, 2, 3, 4] = 2  # of a 4-column grid
    # The tables the query reads: the cache key is their versions, and the page says
    # "all time" for tables with no date column.
    tables: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _kind_fields(self) -> Visual:
        if self.kind == "kpi" and not self.value:
            raise ValueError(f"visual {self.id!r}: a kpi needs `value` (the column to show)")
        if self.kind in ("line", "bar", "heatmap", "funnel", "pie") and (not self.x or not self.y):
            raise ValueError(f"visual {self.id!r}: a {self.kind} chart needs `x` and `y`")
        if not self.tables:
            raise ValueError(f"visual {self.id!r}: list the curated `tables` its query reads")
        return self


class Dashboard(Spec):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str
    description: str = ""
    order: int = 100  # position in the navigation
    filters: tuple[Literal["date", "category"], ...] = ("date", "category")
    default_days: int = Field(30, ge=1)  # the date range when the URL gives none
    visuals: tuple[Visual, ...]
    queries: dict[str, str] = Field(default_factory=dict)  # named detail queries

    @field_validator("visuals")
    @classmethod
    def _unique_ids(cls, visuals: tuple[Visual, ...]) -> tuple[Visual, ...]:
        seen: set[str] = set()
        for v in visuals:
            if v.id in seen:
                raise ValueError(f"two visuals are called {v.id!r}")
            seen.add(v.id)
        return visuals

    def visual(self, visual_id: str) -> Visual:
        for v in self.visuals:
            if v.id == visual_id:
                return v
        raise KeyError(visual_id)

    @classmethod
    def load(cls, path: Path) -> Dashboard:
        """Read a dashboard file; a bad file names the file and the field."""
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
        return cls.model_validate(data)


class Principal(Spec):
    """Who is looking: a BI user (never a shopper), with their role and row rules."""

    email: str
    name: str = ""
    role: Role
    # Row-level rules: column -> allowed values (e.g. {"category_slug": {"books"}}).
    # No entry for a column: every row. An empty set: no row.
    rules: dict[str, frozenset[str]] = Field(default_factory=dict)

    @property
    def sees_identity(self) -> bool:
        return self.role == "admin"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class FilterError(ValueError):
    """A filter value the page cannot use; the message says what is wrong and what to do."""


class Filters(Spec):
    """The page's filters, as kept in the URL (``?start=2026-11-01&end=2026-11-30&category=books
    &drill.category=books``) so a view can be shared."""

    start: date
    end: date  # inclusive
    categories: tuple[str, ...] = ()
    drill: tuple[tuple[str, str], ...] = ()  # (param, value), in the order drilled

    @model_validator(mode="after")
    def _ordered(self) -> Filters:
        if self.start > self.end:
            raise FilterError(f"the start date {self.start} is after the end date {self.end}; "
                              "swap them or pick a new range")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous_period(self) -> Filters:
        """The same number of days just before: what KPI tiles compare against."""
        return self.model_copy(update={"start": self.start - timedelta(days=self.days),
                                       "end": self.start - timedelta(days=1)})


class Freshness(Spec):
    """What the badge says: 'data as of 14:03:07, 4 s ago; next refresh in 6 s'."""

    as_of: float | None  # epoch seconds of the newest data the curated zone holds
    age_seconds: float | None
    next_refresh_seconds: float | None
    tables: dict[str, int] = Field(default_factory=dict)  # curated table -> Delta version


class VisualResult(Spec):
    """A visual's data as the page, its JSON, its CSV and the reports receive it."""

    dashboard: str
    visual: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]  # JSON-safe values (dates as ISO strings)
    value: Any = None  # kpi: the value; None otherwise
    previous: Any = None  # kpi with compare: the previous period's value
    change: float | None = None  # kpi with compare: (value - previous) / previous
    figure: dict[str, Any] | None = None  # Plotly figure JSON for charts
    truncated: bool = False
    cached: bool = False  # served from the cache (same table versions, same filters)
    notes: tuple[str, ...] = ()  # e.g. "all time: product_performance has no date"


class QueryResult(Spec):
    """A SQL page query's answer."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool  # more rows than the limit; only the first ones are here
    elapsed_ms: float


class QueryRefused(ValueError):
    """A SQL page query that would write, read files or leave the curated zone; the message
    says why and what is allowed."""


class QueryError(ValueError):
    """A SQL page query DuckDB could not run (syntax, unknown column, time limit); the
    message is DuckDB's, or says which limit stopped it."""


class UnknownDashboard(KeyError):
    pass


class Engine(Protocol):
    """What the BI web app and the reports use (``tierlake.bi.engine.BiEngine``)."""

    def dashboards(self) -> list[Dashboard]: ...  # sorted by order, then title

    def dashboard(self, dashboard_id: str) -> Dashboard: ...  # raises UnknownDashboard

    def parse_filters(self, dashboard: Dashboard, params: Mapping[str, str],
                      principal: Principal | None = None) -> Filters:
        """The URL's query parameters -> Filters; defaults when absent (the last
        ``default_days`` days ending at the newest data); raises FilterError with a message
        fit for the page (reversed dates, bad dates, unknown category...). With
        ``principal``, a category they may not see reads as unknown (pass it)."""
        ...

    def categories(self, principal: Principal) -> list[tuple[str, str]]: ...  # (slug, name)

    def run_visual(self, dashboard: Dashboard, visual_id: str, filters: Filters,
                   principal: Principal) -> VisualResult: ...

    def run_dashboard(self, dashboard: Dashboard, filters: Filters,
                      principal: Principal) -> list[VisualResult]: ...

    def detail(self, dashboard: Dashboard, visual_id: str, filters: Filters,
               principal: Principal, value: str) -> VisualResult:
        """Drill-to-detail: the rows behind one point (``value`` of the drill column)."""
        ...

    def sql(self, text: str, principal: Principal) -> QueryResult: ...  # QueryRefused, QueryError

    def freshness(self) -> Freshness: ...
