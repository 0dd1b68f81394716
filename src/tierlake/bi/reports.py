"""A dashboard as a static report: one self-contained HTML file, and the same printed to PDF.

QuickSight exports a dashboard to PDF and mails it in scheduled reports
(https://docs.aws.amazon.com/quicksight/latest/user/export-dashboard-to-pdf.html,
https://docs.aws.amazon.com/quicksight/latest/user/sending-reports.html). Here the report is
what the principal sees on the dashboard page, frozen: the engine runs every visual for that
principal (so row rules and identity masks are the page's, applied before any data reaches
this module), and the file carries its figures as Plotly JSON with Plotly's JavaScript
inlined from the installed package. It opens offline, years later, and never fetches
anything. The PDF is Debian's chromium printing that file headless; the report writes
"Charts drawn: n of n" into the page once Plotly has drawn them, so a PDF printed before the
JavaScript ran says so instead of showing empty frames.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import structlog

from tierlake.bi.model import Dashboard, Engine, Filters, Format, Principal, Visual, VisualResult
from tierlake.errors import TierlakeError

log = structlog.get_logger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
TABLE_ROWS_SHOWN = 200  # rows of a table visual a report shows; it says when there are more
PDF_TIMEOUT_SECONDS = 90.0
PDF_VIRTUAL_TIME_MS = 15_000  # how long the page's JavaScript may run (virtual time) before print
# Debian's wrapper script (/usr/bin/chromium) prints a warning and reads /etc/chromium.d; the
# binary behind it takes the same flags without either.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--no-pdf-header-footer",
    # Plotly sizes a chart to its frame when it draws (on screen), and printing does not
    # redraw it: a window no wider than an A4 page's printable width (186 mm, about 703 CSS
    # px, plus the body's screen margins) keeps every chart inside the page.
    "--window-size=740,1040",
    # A report fetches nothing; never look up a host outside this machine either.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
)


# Each print is a whole browser (a few hundred MB, a core for seconds): a burst of clicks on
# "PDF" waits its turn instead of starting a chromium each.
PARALLEL_PRINTS = 2
_prints = threading.BoundedSemaphore(PARALLEL_PRINTS)


class ReportError(TierlakeError, RuntimeError):
    """A report could not be made; the message says why and what to install or change."""


class ChromiumMissingError(ReportError, FileNotFoundError):
    """No chromium to print PDFs with."""


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              autoescape=jinja2.select_autoescape(("html",)),
                              undefined=jinja2.StrictUndefined)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """Plotly's bundled build, from the installed ``plotly`` package (never a CDN), made safe
    to inline in a ``<script>`` element."""
    source = resources.files("plotly").joinpath("package_data/plotly.min.js").read_text("utf-8")
    return re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)


def _json_for_script(value: Any) -> str:
    """JSON that cannot close the ``<script type="application/json">`` element holding it."""
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _number(value: float) -> str:
    """Like the page's ``Intl.NumberFormat("en-US", {maximumFractionDigits: 2})``."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def format_value(value: Any, fmt: Format | None) -> str:
    """A value as the dashboard page shows it (``dashboard.js``'s ``format``): money with two
    decimals, percentages from fractions of 1, durations with their unit."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if fmt == "money":
        return f"{value:,.2f}"
    if fmt == "percent":
        return f"{_number(value * 100)} %"
    if fmt == "seconds":
        return f"{_number(value)} s"
    if fmt == "milliseconds":
        return f"{_number(value)} ms"
    return _number(value)


def _cell(value: Any, fmt: Format | None) -> str:
    """A table cell: formatted when its column declares a format, else as it is."""
    if fmt is not None:
        return format_value(value, fmt)
    return "" if value is None else str(value)


def _change(change: float | None) -> tuple[str, str] | None:
    if change is None:
        return None
    arrow = "▲" if change > 0 else "▼" if change < 0 else "▬"
    tone = "up" if change > 0 else "down" if change < 0 else "flat"
    sign = "+" if change > 0 else ""
    return f"{arrow} {sign}{_number(change * 100)} % vs previous period", tone


def _item(visual: Visual, result: VisualResult) -> dict[str, Any]:
    formats = dict(visual.formats)
    rows = result.rows[:TABLE_ROWS_SHOWN]
    table = [[_cell(v, formats.get(c)) for c, v in zip(result.columns, row, strict=False)]
             for row in rows]
    figure = result.figure if visual.kind not in ("kpi", "table") else None
    return {
        "id": visual.id, "title": visual.title, "kind": visual.kind,
        "description": visual.description, "width": visual.width,
        "value": format_value(result.value, visual.format) if visual.kind == "kpi" else None,
        "previous": (format_value(result.previous, visual.format)
                     if visual.compare and result.previous is not None else None),
        "change": _change(result.change),
        "figure_json": _json_for_script(figure) if figure else None,
        "columns": result.columns, "table": table,
        "more_rows": len(result.rows) - len(rows), "truncated": result.truncated,
        "notes": result.notes,
    }


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(engine: Engine, dashboard: Dashboard, filters: Filters, principal: Principal,
                *, generated_at: datetime | None = None) -> str:
    """The dashboard as ``principal`` sees it under ``filters``: one HTML file that needs
    nothing else (figures, KPI tiles, tables, the filters and "data as of")."""
    results = engine.run_dashboard(dashboard, filters, principal)
    freshness = engine.freshness()
    # The engine returns what the page shows, in its order (a drilled visual replaced by
    # its next level, which is declared hidden).
    items = [_item(dashboard.visual(r.visual), r) for r in results]
    now = generated_at or datetime.now(UTC)
    html = _env().get_template("report.html").render(
        dashboard=dashboard, filters=filters, principal=principal,
        kpis=[i for i in items if i["kind"] == "kpi"],
        visuals=[i for i in items if i["kind"] != "kpi"],
        charts=sum(1 for i in items if i["figure_json"]),
        as_of=_when(freshness.as_of), generated=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        plotly_js=plotly_js())
    log.info("bi.report_rendered", dashboard=dashboard.id, role=principal.role,
             visuals=len(items), start=str(filters.start), end=str(filters.end),
             bytes=len(html))
    return html


def find_chromium() -> str:
    """The chromium binary that prints PDFs; ChromiumMissingError names the package."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    raise ChromiumMissingError(
        "PDF reports are printed by chromium, which is not installed: run "
        "`apt-get install -y chromium` (Debian's package), or export the report as HTML")


def chromium_available() -> bool:
    try:
        find_chromium()
    except ChromiumMissingError:
        return False
    return True


def render_pdf(html: str, *, timeout: float = PDF_TIMEOUT_SECONDS,
               virtual_time_ms: int = PDF_VIRTUAL_TIME_MS,
               extra_flags: Sequence[str] = ()) -> bytes:
    """Print a report (from ``render_html``) to PDF with headless chromium; its temporary
    files (the page, the profile, the PDF) are removed whatever happens. At most
    ``PARALLEL_PRINTS`` run at once; the others wait."""
    binary = find_chromium()
    with _prints, tempfile.TemporaryDirectory(prefix="tierlake-report-") as tmp:
        page = Path(tmp) / "report.html"
        out = Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        cmd = [binary, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={tmp}/profile",
               f"--virtual-time-budget={virtual_time_ms}", f"--print-to-pdf={out}",
               page.as_uri()]
        # Its own session, so a timeout ends chromium's helper processes too.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env={**os.environ, "HOME": tmp})
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            log.warning("bi.report_print_timeout", timeout=timeout)
            raise ReportError(
                f"chromium did not print the report within {timeout:g} s; try again, or "
                "export it as HTML") from None
        finally:
            with suppress(ProcessLookupError):  # helpers left behind by chromium, if any
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ReportError(f"chromium could not print the report (exit {proc.returncode}): "
                              + " | ".join(tail))
        pdf = out.read_bytes()
    if not pdf.startswith(b"%PDF"):
        raise ReportError("chromium wrote something that is not a PDF; export as HTML instead")
    log.info("bi.report_printed", bytes=len(pdf))
    return pdf
