"""The BI tier's export, mail and alert pages: a router the app includes under ``/bi``.

- ``GET /bi/dashboards/{id}/report.html?<filters>`` and ``.../report.pdf``: the dashboard as
  the logged-in principal sees it with the page's filters (the same URL parameters as the
  dashboard page), downloaded as a static report (QuickSight's "Export to PDF").
- ``GET /bi/mail`` (admins): what the embedded mail catcher holds, newest first;
  ``GET /bi/mail/{key}`` one message, its HTML in a sandboxed frame, its attachments.
- ``GET /bi/alerts`` (admins): the declared alerts and scheduled reports, their state, last
  check and last mail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from tierlake.bi import alerts, mail, reports
from tierlake.bi.api import ApiError, dashboard_or_404, engine_of, filter_params
from tierlake.bi.auth import admin_principal, current_principal
from tierlake.bi.model import FilterError, Principal
from tierlake.bi.pages import message_page, render

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)
Who = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(admin_principal)]
_KEY = re.compile(r"^[A-Za-z0-9._,:=-]+$")


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return render(request, name, {"when": _when, "number": alerts.show_number, **context},
                  status)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        # Opened in the browser anyway, it runs no script with this origin's cookies.
        "Content-Security-Policy": "sandbox allow-scripts; default-src 'none'; "
                                   "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                   "img-src data: blob:",
        "Cache-Control": "private, no-store"})


async def _report(request: Request, dashboard_id: str, principal: Principal,
                  fmt: str) -> Response:
    """The page's own parsing of the URL (a repeated ``category``, ``drill.*``), so a report
    shows exactly the view its link was on."""
    engine = engine_of(request)
    try:
        dashboard = dashboard_or_404(engine, dashboard_id)
    except ApiError as exc:
        return message_page(request, 404, "No such dashboard", exc.message)
    try:
        # With the principal: a category they may not see reads as unknown, as on the page.
        filters = await run_in_threadpool(engine.parse_filters, dashboard,
                                          filter_params(request), principal)
    except ValidationError as exc:  # a validator's FilterError, wrapped by pydantic
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        return message_page(request, 400, "Check the filters", message)
    except FilterError as exc:
        return message_page(request, 400, "Check the filters", str(exc))
    html = await run_in_threadpool(reports.render_html, engine, dashboard, filters, principal)
    stem = f"{dashboard.id}-{filters.start.isoformat()}-to-{filters.end.isoformat()}"
    log.info("bi.report_exported", dashboard=dashboard.id, format=fmt, user=principal.email)
    if fmt == "html":
        return _attachment(html.encode(), "text/html; charset=utf-8", f"{stem}.html")
    try:
        pdf = await run_in_threadpool(reports.render_pdf, html)
    except reports.ReportError as exc:
        return message_page(request, 503, "The PDF could not be made", str(exc))
    return _attachment(pdf, "application/pdf", f"{stem}.pdf")


@router.get("/dashboards/{dashboard_id}/report.html")
async def report_html(request: Request, dashboard_id: str, principal: Who) -> Response:
    return await _report(request, dashboard_id, principal, "html")


@router.get("/dashboards/{dashboard_id}/report.pdf")
async def report_pdf(request: Request, dashboard_id: str, principal: Who) -> Response:
    return await _report(request, dashboard_id, principal, "pdf")


@router.get("/mail")
async def mail_list(request: Request, principal: Admin) -> Response:
    settings = request.app.state.settings
    messages = await run_in_threadpool(mail.list_messages, mail.mail_dir(settings))
    return _render(request, "mail_list.html", {
        "messages": messages, "smtp": f"{settings.bi.smtp_host}:{settings.bi.smtp_port}",
        "catcher": settings.bi.mail_catcher})


def _read(request: Request, key: str) -> mail.MailView | None:
    if not _KEY.match(key):
        return None
    try:
        return mail.read_message(mail.mail_dir(request.app.state.settings), key)
    except KeyError:
        return None


@router.get("/mail/{key}")
async def mail_message(request: Request, key: str, principal: Admin) -> Response:
    view = await run_in_threadpool(_read, request, key)
    if view is None:
        return message_page(request, 404, "No such message",
                        "The catcher holds no such message; pick one from the Mail page.")
    return _render(request, "mail_message.html", {"m": view})


@router.get("/mail/{key}/attachments/{index}")
async def mail_attachment(request: Request, key: str, index: int, principal: Admin
                          ) -> Response:
    view = await run_in_threadpool(_read, request, key)
    if view is None or not 0 <= index < len(view.attachments):
        return message_page(request, 404, "No such attachment",
                        "That message has no such attachment; open the message again.")
    a = view.attachments[index]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", a.filename) or "attachment"
    return _attachment(a.content, a.mime_type, safe)


@router.get("/alerts")
async def alerts_page(request: Request, principal: Admin) -> Response:
    settings = request.app.state.settings
    try:
        overview = await run_in_threadpool(alerts.describe, settings)
    except alerts.AlertsFileError as exc:
        return _render(request, "alerts.html", {"overview": None, "error": str(exc),
                                                "path": alerts.alerts_path(settings)})
    return _render(request, "alerts.html", {"overview": overview, "error": None,
                                            "path": overview.path,
                                            "every": settings.bi.alert_check_seconds})
