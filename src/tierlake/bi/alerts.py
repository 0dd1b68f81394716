"""Threshold alerts and scheduled reports, declared as data in one TOML file.

Two AWS behaviours meet here. QuickSight's threshold alerts watch a KPI (or a table's value)
and e-mail when it crosses a threshold, at most as often as the alert's notification
frequency allows (https://docs.aws.amazon.com/quicksight/latest/user/threshold-alerts.html);
its scheduled reports mail a dashboard every day or hour
(https://docs.aws.amazon.com/quicksight/latest/user/sending-reports.html). And an alert
notifies like a CloudWatch alarm's action: on the *state change* into ``ALARM``, not on every
evaluation that finds it breached; the states are CloudWatch's ``OK``, ``ALARM`` and
``INSUFFICIENT_DATA`` (no value to compare)
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation.html).

The file (``bi.alerts_file``, default ``<data_dir>/bi-alerts.toml``; see
``docs/bi-alerts.example.toml``) is read again on every check, so editing it needs no restart.
What each alert and report last did (state, value, when it last mailed, when a report is next
due) is kept in ``<data_dir>/bi-alerts-state.json``, written atomically, so a restart neither
forgets a breach (and mails it again) nor sends a report twice. One process runs the checks:
the control plane of `tierlake up` (two BI instances behind the load balancer never both
send).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import threading
import time
import tomllib
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tierlake.bi import mail, reports
from tierlake.bi.model import Dashboard, Engine, Filters, Principal, Role
from tierlake.errors import ConfigError, TierlakeError

if TYPE_CHECKING:
    from tierlake.config import Settings

log = structlog.get_logger(__name__)

AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_period(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"1d"`` -> seconds."""
    m = _PERIOD.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a period: write a number and a unit, like 30s, "
                         "15m, 1h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertSpec(_Spec):
    """One threshold alert: a value (a dashboard visual's, or a SQL query's), a condition,
    recipients."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    # The value: a KPI's value (or `column` of a table visual's first row) ...
    dashboard: str | None = None
    visual: str | None = None
    column: str | None = None
    # ... or the first row of a read-only SQL query over the curated tables.
    sql: str | None = None
    condition: Literal["below", "above"]
    threshold: float
    # The visual's filters: the last `days` days ending at the newest data (1 = "today"), and
    # categories; absent: the dashboard's default range, every category.
    days: int | None = Field(None, ge=1, le=3660)
    category: tuple[str, ...] = ()
    to: tuple[str, ...] = Field(min_length=1)
    # QuickSight's notification frequency: after a mail, breaches within this period are
    # recorded but not mailed. "0s": every transition into ALARM mails.
    at_most_every: str = "0s"

    @field_validator("at_most_every")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AlertSpec:
        if (self.sql is None) == (self.visual is None):
            raise ValueError(f"alert {self.name!r}: give either `dashboard` and `visual` (a "
                             "KPI or a table visual) or `sql` (a query over curated tables)")
        if self.visual is not None and not self.dashboard:
            raise ValueError(f"alert {self.name!r}: `visual` needs the `dashboard` it is on")
        if self.sql is not None and (self.days is not None or self.category):
            raise ValueError(f"alert {self.name!r}: `days` and `category` filter a dashboard "
                             "visual; a `sql` alert writes its own WHERE clause")
        return self

    def breached(self, value: float) -> bool:
        return value < self.threshold if self.condition == "below" else value > self.threshold


class ReportSpec(_Spec):
    """One scheduled report: a dashboard mailed as HTML (and PDF) to recipients."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dashboard: str
    to: tuple[str, ...] = Field(min_length=1)
    every: str | None = None  # "1d", "1h": first sent at the first check, then each period
    at: str | None = None  # "07:00": daily at this UTC time
    days: int | None = Field(None, ge=1, le=3660)
    category: tuple[str, ...] = ()
    # Whose view is mailed: "analyst" (default) masks customer identities, as a mail may
    # travel further than the BI tier's login.
    role: Role = "analyst"
    pdf: bool = True  # attach a PDF when chromium is installed

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is not None and parse_period(value) < 1:
            raise ValueError("`every` must be at least 1s")
        return value

    @field_validator("at")
    @classmethod
    def _at(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"`at` is {value!r}: write a UTC time of day as HH:MM, like 07:00")
        return value

    @model_validator(mode="after")
    def _one_period(self) -> ReportSpec:
        if (self.every is None) == (self.at is None):
            raise ValueError(f"report {self.name!r}: give either `every` (like \"1d\") or `at` "
                             "(a UTC time like \"07:00\")")
        return self

    def next_after(self, moment: float, first: bool = False) -> float:
        """When the report is next due after ``moment`` (epoch seconds)."""
        if self.every is not None:
            return moment if first else moment + parse_period(self.every)
        assert self.at is not None
        hour, minute = (int(p) for p in self.at.split(":"))
        day = datetime.fromtimestamp(moment, UTC).replace(hour=hour, minute=minute, second=0,
                                                          microsecond=0)
        if day.timestamp() <= moment:
            day += timedelta(days=1)
        return day.timestamp()


class AlertsFile(_Spec):
    alert: tuple[AlertSpec, ...] = ()
    report: tuple[ReportSpec, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> AlertsFile:
        for kind, items in (("alert", self.alert), ("report", self.report)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"two {kind}s are called {dupes[0]!r}; names must be unique")
        return self


class AlertsFileError(ConfigError):
    """The alerts file cannot be used; the message names the file, the entry and the field."""


def alerts_path(settings: Settings) -> Path:
    return settings.bi.alerts_file or settings.data_dir / "bi-alerts.toml"


def state_path(settings: Settings) -> Path:
    return settings.data_dir / "bi-alerts-state.json"


def load_alerts(path: Path) -> AlertsFile:
    """The declared alerts and reports; a missing file declares none."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return AlertsFile()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AlertsFileError(f"{path}: {exc}; fix the file (see "
                              "docs/bi-alerts.example.toml)") from exc
    try:
        return AlertsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise AlertsFileError(f"{path}: {problems} (see docs/bi-alerts.example.toml)") from exc


@dataclass
class AlertStatus:
    """What an alert last did (kept in the state file; the Alerts page shows it)."""

    state: AlarmState = "INSUFFICIENT_DATA"
    value: float | None = None
    checked_at: float | None = None
    changed_at: float | None = None
    sent_at: float | None = None
    error: str | None = None


@dataclass
class ReportStatus:
    next_due: float | None = None
    sent_at: float | None = None
    error: str | None = None


def read_state(path: Path) -> tuple[dict[str, AlertStatus], dict[str, ReportStatus]]:
    """What the alerts and reports last did; an absent or unreadable file: nothing yet."""
    try:
        data = json.loads(path.read_text())
        return ({k: AlertStatus(**v) for k, v in data.get("alerts", {}).items()},
                {k: ReportStatus(**v) for k, v in data.get("reports", {}).items()})
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("bi.alerts_state_unreadable", path=str(path), error=str(exc))
        return {}, {}


@dataclass(frozen=True)
class AlertsOverview:
    """The declared alerts and reports with their last state (the Alerts page, `alerts list`)."""

    path: Path
    declared: AlertsFile
    alerts: dict[str, AlertStatus]
    reports: dict[str, ReportStatus]


def describe(settings: Settings) -> AlertsOverview:
    alerts, reports_ = read_state(state_path(settings))
    path = alerts_path(settings)
    return AlertsOverview(path, load_alerts(path), alerts, reports_)


@dataclass
class AlertEvaluation:
    """One alert at one check."""

    name: str
    state: AlarmState
    previous: AlarmState
    value: float | None
    threshold: float
    condition: str
    fired: bool = False  # mailed at this check
    suppressed: bool = False  # went into ALARM within `at_most_every` of the last mail
    error: str | None = None


@dataclass
class CheckInfo:
    """What one check did: every alert's evaluation and the reports it mailed."""

    checked_at: float
    alerts: list[AlertEvaluation] = field(default_factory=list)
    reports_sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def fired(self) -> list[AlertEvaluation]:
        return [a for a in self.alerts if a.fired]


class _SourceError(TierlakeError, ValueError):
    """An alert's value could not be read (unknown dashboard/visual/column, bad SQL)."""


_MAIL = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ALERT_BODY = _MAIL.from_string("""<!doctype html><html><body style="font-family:sans-serif">
<h2 style="color:#b3261e">ALARM: {{ spec.name }}</h2>
{% if spec.description %}<p>{{ spec.description }}</p>{% endif %}
<p>The value is <b>{{ value }}</b>, {{ spec.condition }} the threshold <b>{{ threshold }}</b>
(state {{ previous }} &rarr; ALARM at {{ when }}).</p>
<p>Source: {% if spec.sql %}<code>{{ spec.sql }}</code>{% else %}visual <b>{{ spec.visual }}</b>
on dashboard <b>{{ spec.dashboard }}</b> (/bi/dashboards/{{ spec.dashboard }}){% endif %}
{% if filters %}, {{ filters }}{% endif %}.</p>
<p style="color:#5b6475">You get this mail once when the alert goes into ALARM, not while it
stays there{% if spec.at_most_every != "0s" %}, and at most every
{{ spec.at_most_every }}{% endif %}.
tierlake BI</p></body></html>""")
_REPORT_BODY = _MAIL.from_string("""<!doctype html><html><body style="font-family:sans-serif">
<h2>{{ dashboard.title }}</h2>
<p>{{ filters.start.isoformat() }} to {{ filters.end.isoformat() }}{% if filters.categories %},
categories {{ filters.categories | join(", ") }}{% endif %}. The full report is attached
({{ attached | join(" and ") }}){% if pdf_note %}; {{ pdf_note }}{% endif %}.</p>
<p style="color:#5b6475">Scheduled report {{ spec.name }} ({% if spec.every %}every
{{ spec.every }}{% else %}daily at {{ spec.at }} UTC{% endif %}), as an {{ spec.role }} sees it.
tierlake BI</p></body></html>""")


def show_number(value: float) -> str:
    """A value or threshold as mails and pages show it: thousands separated, rates and
    other small numbers with their significant digits (0.0213), never an exponent."""
    if abs(value) >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _SourceError(f"{what} is {value!r}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise _SourceError(f"{what} is {value!r}, not a number") from None
    return None if math.isnan(number) else number


class AlertScheduler:
    """Evaluates the alerts and sends due reports; ``run`` loops every
    ``bi.alert_check_seconds`` until ``stop`` is set."""

    def __init__(self, settings: Settings, engine: Engine, *, path: Path | None = None,
                 state_file: Path | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.path = path or alerts_path(settings)
        self.state_file = state_file or state_path(settings)
        self.admin = Principal(email=settings.admin_email, name="alerts", role="admin")
        self._lock = threading.Lock()

    # -- state --------------------------------------------------------------------------
    def read_state(self) -> tuple[dict[str, AlertStatus], dict[str, ReportStatus]]:
        return read_state(self.state_file)

    def _write_state(self, alerts: dict[str, AlertStatus],
                     reports_: dict[str, ReportStatus]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        payload = {"alerts": {k: asdict(v) for k, v in alerts.items()},
                   "reports": {k: asdict(v) for k, v in reports_.items()}}
        with tmp.open("w") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # -- evaluation ----------------------------------------------------------------------
    def _filters(self, dashboard: Dashboard, days: int | None,
                 category: tuple[str, ...]) -> Filters:
        base = self.engine.parse_filters(dashboard, {})
        if category:
            known = {slug for slug, _ in self.engine.categories(self.admin)}
            unknown = sorted(set(category) - known)
            if unknown:
                raise _SourceError(f"unknown category {unknown[0]!r}; known: "
                                   + ", ".join(sorted(known)))
        start = base.start if days is None else base.end - timedelta(days=days - 1)
        return Filters(start=start, end=base.end, categories=category)

    def _dashboard(self, dashboard_id: str) -> Dashboard:
        try:
            return self.engine.dashboard(dashboard_id)
        except KeyError:
            known = ", ".join(d.id for d in self.engine.dashboards())
            raise _SourceError(f"no dashboard {dashboard_id!r}; known: {known}") from None

    def _value(self, spec: AlertSpec) -> tuple[float | None, Filters | None]:
        if spec.sql is not None:
            answer = self.engine.sql(spec.sql, self.admin)
            if not answer.rows:
                return None, None
            index = 0
            if spec.column is not None:
                if spec.column not in answer.columns:
                    raise _SourceError(f"the query has no column {spec.column!r}; it has "
                                       + ", ".join(answer.columns))
                index = answer.columns.index(spec.column)
            return _number(answer.rows[0][index], "the query's value"), None
        assert spec.dashboard is not None and spec.visual is not None
        dashboard = self._dashboard(spec.dashboard)
        try:
            visual = dashboard.visual(spec.visual)
        except KeyError:
            raise _SourceError(f"dashboard {dashboard.id!r} has no visual {spec.visual!r}; it "
                               "has " + ", ".join(v.id for v in dashboard.visuals)) from None
        filters = self._filters(dashboard, spec.days, spec.category)
        result = self.engine.run_visual(dashboard, visual.id, filters, self.admin)
        if visual.kind == "kpi" and spec.column is None:
            return _number(result.value, f"{visual.id}'s value"), filters
        if spec.column is None:
            raise _SourceError(f"visual {visual.id!r} is a {visual.kind}: name the `column` of "
                               "its first row to watch")
        if spec.column not in result.columns:
            raise _SourceError(f"visual {visual.id!r} has no column {spec.column!r}; it has "
                               + ", ".join(result.columns))
        if not result.rows:
            return None, filters
        return _number(result.rows[0][result.columns.index(spec.column)],
                       f"{visual.id}.{spec.column}"), filters

    def _evaluate(self, spec: AlertSpec, status: AlertStatus, now: float) -> AlertEvaluation:
        previous = status.state
        error = None
        try:
            value, filters = self._value(spec)
        except (TierlakeError, ValueError, KeyError) as exc:
            value, filters, error = None, None, str(exc)
            log.warning("bi.alert_unreadable", alert=spec.name, error=error)
        state: AlarmState = ("INSUFFICIENT_DATA" if value is None
                             else "ALARM" if spec.breached(value) else "OK")
        evaluation = AlertEvaluation(spec.name, state, previous, value, spec.threshold,
                                     spec.condition, error=error)
        if state == "ALARM" and previous != "ALARM":
            quiet = parse_period(spec.at_most_every)
            if status.sent_at is not None and now - status.sent_at < quiet:
                evaluation.suppressed = True
                log.info("bi.alert_suppressed", alert=spec.name, value=value,
                         last_sent=status.sent_at, at_most_every=spec.at_most_every)
            else:
                try:
                    self._mail_alert(spec, evaluation, filters, now)
                except mail.MailError as exc:
                    # Not recorded as ALARM: the next check sees the transition and tries again.
                    evaluation.error = str(exc)
                    status.checked_at, status.error = now, str(exc)
                    return evaluation
                evaluation.fired = True
                status.sent_at = now
        if state != previous:
            status.changed_at = now
            log.info("bi.alert_state_changed", alert=spec.name, previous=previous, state=state,
                     value=value, threshold=spec.threshold)
        status.state, status.value, status.checked_at, status.error = state, value, now, error
        return evaluation

    def _mail_alert(self, spec: AlertSpec, evaluation: AlertEvaluation,
                    filters: Filters | None, now: float) -> None:
        shown = ("" if filters is None else
                 f"{filters.start.isoformat()} to {filters.end.isoformat()}"
                 + (f", categories {', '.join(filters.categories)}" if filters.categories else ""))
        html = _ALERT_BODY.render(
            spec=spec, value=show_number(evaluation.value or 0),
            threshold=show_number(spec.threshold),
            previous=evaluation.previous, filters=shown,
            when=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        subject = (f'ALARM: "{spec.name}": {show_number(evaluation.value or 0)} is '
                   f"{spec.condition} {show_number(spec.threshold)}")
        mail.send(self.settings, spec.to, subject, html)
        log.info("bi.alert_fired", alert=spec.name, value=evaluation.value, to=list(spec.to))

    def _send_report(self, spec: ReportSpec) -> None:
        dashboard = self._dashboard(spec.dashboard)
        filters = self._filters(dashboard, spec.days, spec.category)
        principal = Principal(email=f"report:{spec.name}", name=spec.name, role=spec.role)
        html = reports.render_html(self.engine, dashboard, filters, principal)
        stem = f"{dashboard.id}-{filters.end.isoformat()}"
        attachments = [mail.Attachment(f"{stem}.html", html.encode(), "text/html")]
        pdf_note = None
        if spec.pdf:
            try:
                attachments.append(mail.Attachment(f"{stem}.pdf", reports.render_pdf(html),
                                                   "application/pdf"))
            except reports.ReportError as exc:
                pdf_note = f"no PDF: {exc}"
                log.warning("bi.report_pdf_skipped", report=spec.name, error=str(exc))
        body = _REPORT_BODY.render(dashboard=dashboard, filters=filters, spec=spec,
                                   attached=[a.filename for a in attachments], pdf_note=pdf_note)
        subject = (f"{dashboard.title} report: {filters.start.isoformat()} to "
                   f"{filters.end.isoformat()}")
        mail.send(self.settings, spec.to, subject, body, attachments)
        log.info("bi.report_sent", report=spec.name, dashboard=dashboard.id, to=list(spec.to),
                 attachments=[a.filename for a in attachments])

    # -- the check -----------------------------------------------------------------------
    def check_once(self, now: float | None = None) -> CheckInfo:
        """Evaluate every alert and send the reports that are due; returns what it did.
        Raises AlertsFileError when the file cannot be used (nothing is evaluated then)."""
        with self._lock:
            declared = load_alerts(self.path)
            now = time.time() if now is None else now
            alerts, reports_ = self.read_state()
            info = CheckInfo(checked_at=now)
            for spec in declared.alert:
                status = alerts.setdefault(spec.name, AlertStatus())
                evaluation = self._evaluate(spec, status, now)
                info.alerts.append(evaluation)
                if evaluation.error:
                    info.errors.append(f"alert {spec.name}: {evaluation.error}")
            for rspec in declared.report:
                rstatus = reports_.setdefault(rspec.name, ReportStatus())
                if rstatus.next_due is None:
                    rstatus.next_due = rspec.next_after(now, first=True)
                if now < rstatus.next_due:
                    continue
                try:
                    self._send_report(rspec)
                except (TierlakeError, ValueError, KeyError) as exc:
                    rstatus.error = str(exc)  # due still: the next check tries again
                    info.errors.append(f"report {rspec.name}: {exc}")
                    log.warning("bi.report_failed", report=rspec.name, error=str(exc))
                    continue
                rstatus.sent_at, rstatus.error = now, None
                rstatus.next_due = rspec.next_after(max(now, rstatus.next_due))
                info.reports_sent.append(rspec.name)
            names = {a.name for a in declared.alert}, {r.name for r in declared.report}
            self._write_state({k: v for k, v in alerts.items() if k in names[0]},
                              {k: v for k, v in reports_.items() if k in names[1]})
            return info

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``bi.alert_check_seconds`` until ``stop`` is set. A bad file or a
        failing check is logged and tried again at the next interval."""
        interval = self.settings.bi.alert_check_seconds
        log.info("bi.alerts_started", path=str(self.path), interval=interval)
        while not stop.is_set():
            try:
                info = await asyncio.to_thread(self.check_once)
                if info.fired or info.reports_sent:
                    log.info("bi.alerts_checked", fired=[a.name for a in info.fired],
                             reports=info.reports_sent)
            except TierlakeError as exc:
                log.warning("bi.alerts_check_failed", error=str(exc))
            except Exception:  # the loop outlives one bad check; the log has the traceback
                log.exception("bi.alerts_check_crashed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
        log.info("bi.alerts_stopped")
