"""`tierlake bi report`, `tierlake bi alerts ...` and `tierlake mail ...`: reports, alerts and
the mail catcher from the command line.

``bi_reports_app``'s commands join the `bi` group (``bi_app.add_typer(bi_reports_app)``, no
name: Typer merges them), ``mail_app`` is the `mail` group. Mistakes are one line on stderr
and exit code 1 (``tierlake.cli.main`` prints every ``TierlakeError`` that way).
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tierlake.bi import mail
from tierlake.bi.alerts import AlertScheduler, describe, show_number
from tierlake.bi.model import FilterError, Principal, UnknownDashboard
from tierlake.bi.reports import render_html, render_pdf
from tierlake.config import Settings, get_settings
from tierlake.errors import ConfigError, TierlakeError
from tierlake.logging import configure_logging

if TYPE_CHECKING:
    from tierlake.bi.engine import BiEngine

_TYPER = {"no_args_is_help": True, "rich_markup_mode": None,
          "context_settings": {"help_option_names": ["-h", "--help"]}}
bi_reports_app = typer.Typer(help="BI reports and alerts.", **_TYPER)  # type: ignore[arg-type]
alerts_app = typer.Typer(
    help="Threshold alerts and scheduled reports declared in bi.alerts_file.",
    **_TYPER)  # type: ignore[arg-type]
bi_reports_app.add_typer(alerts_app, name="alerts")
mail_app = typer.Typer(
    help="The mail catcher: an SMTP server that keeps what the BI tier sends.",
    **_TYPER)  # type: ignore[arg-type]

out = Console()


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise ConfigError(f"configuration is invalid: {exc.errors()[0]['msg']}; "
                          "docs/configuration.md lists every setting") from exc
    configure_logging(settings.log_level, settings.log_format, "cli")
    return settings


def _engine(settings: Settings) -> BiEngine:
    from tierlake.bi.engine import BiEngine

    return BiEngine.from_settings(settings)


@bi_reports_app.command("report")
def report(
    dashboard: Annotated[str, typer.Argument(help="The dashboard's id (e.g. sales).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the report.")],
    fmt: Annotated[Literal["html", "pdf"], typer.Option(
        "--format", help="html: one self-contained file; pdf: printed by chromium.")] = "html",
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (inclusive).")] = None,
    category: Annotated[list[str] | None, typer.Option(
        help="A category slug; repeat for several [default: every category].")] = None,
    role: Annotated[Literal["admin", "analyst"], typer.Option(
        help="Whose view: analyst masks customer identities.")] = "admin",
) -> None:
    """Export a dashboard as a static HTML report or a PDF."""
    settings = _settings()
    engine = _engine(settings)
    try:
        board = engine.dashboard(dashboard)
    except UnknownDashboard:
        known = ", ".join(d.id for d in engine.dashboards())
        raise TierlakeError(f"no dashboard {dashboard!r}; known: {known}") from None
    params = {k: v for k, v in (("start", start), ("end", end)) if v}
    if category:
        params["category"] = ",".join(category)
    try:
        filters = engine.parse_filters(board, params)
    except FilterError as exc:
        raise TierlakeError(str(exc)) from None
    principal = Principal(email=settings.admin_email, name="cli", role=role)
    html = render_html(engine, board, filters, principal)
    data = render_pdf(html) if fmt == "pdf" else html.encode()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(data)
    out.print(f"{escape(board.title)} ({filters.start} to {filters.end}) -> "
              f"{escape(str(out_file))}, {len(data):,} bytes", soft_wrap=True)


@alerts_app.command("check")
def alerts_check() -> None:
    """Evaluate every alert once and send the reports that are due; print what happened."""
    settings = _settings()
    scheduler = AlertScheduler(settings, _engine(settings))
    info = scheduler.check_once()
    if not info.alerts and not info.reports_sent:
        out.print(f"No alerts or due reports in {escape(str(scheduler.path))}.", soft_wrap=True)
    table = Table("alert", "state", "value", "condition", "mail")
    for a in info.alerts:
        value = "-" if a.value is None else show_number(a.value)
        sent = ("sent" if a.fired else "suppressed (at_most_every)" if a.suppressed
                else "failed" if a.error and a.state == "ALARM" else "")
        table.add_row(a.name, f"{a.previous} -> {a.state}" if a.previous != a.state else a.state,
                      value, f"{a.condition} {show_number(a.threshold)}", sent)
    if info.alerts:
        out.print(table)
    for name in info.reports_sent:
        out.print(f"report {escape(name)}: sent")
    for problem in info.errors:
        out.print(f"[yellow]warning:[/] {escape(problem)}", soft_wrap=True)
    if info.errors:
        sys.exit(1)


@alerts_app.command("list")
def alerts_list() -> None:
    """The declared alerts and reports with their last state (no evaluation)."""
    overview = describe(_settings())
    declared, alerts, reports_ = overview.declared, overview.alerts, overview.reports
    out.print(f"From {escape(str(overview.path))}:", soft_wrap=True)
    table = Table("alert", "source", "condition", "state", "last check", "last mail")
    for spec in declared.alert:
        s = alerts.get(spec.name)
        source = spec.sql or f"{spec.dashboard}.{spec.visual}"
        table.add_row(spec.name, source, f"{spec.condition} {show_number(spec.threshold)}",
                      s.state if s else "not checked yet", _when(s.checked_at if s else None),
                      _when(s.sent_at if s else None))
    out.print(table)
    rtable = Table("report", "dashboard", "schedule", "next due", "last sent")
    for r in declared.report:
        rs = reports_.get(r.name)
        rtable.add_row(r.name, r.dashboard, f"every {r.every}" if r.every else f"at {r.at} UTC",
                       _when(rs.next_due if rs else None), _when(rs.sent_at if rs else None))
    out.print(rtable)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@mail_app.command("serve")
def mail_serve(
    port: Annotated[int | None, typer.Option(help="[default: bi.smtp_port, 8025]")] = None,
) -> None:
    """Run the mail catcher alone until Ctrl-C (`tierlake up` runs it for you)."""
    settings = _settings()
    catcher = mail.MailCatcher(settings.bi.smtp_host, port or settings.bi.smtp_port,
                               mail.mail_dir(settings), settings.bi.mail_keep)
    catcher.start()
    out.print(f"Mail catcher on {escape(catcher.host)}:{catcher.port}, keeping messages in "
              f"{escape(str(catcher.maildir))}; Ctrl-C stops it.", soft_wrap=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        catcher.stop()


@mail_app.command("list")
def mail_list() -> None:
    """What the catcher holds, newest first."""
    settings = _settings()
    table = Table("received", "to", "subject", "attachments")
    for m in mail.list_messages(mail.mail_dir(settings)):
        table.add_row(_when(m.received), ", ".join(m.to), m.subject, ", ".join(m.attachments))
    out.print(table)
