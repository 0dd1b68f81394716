"""Static HTML reports and their PDFs, from the real engine over a real (small) lake.

The PDFs are printed by Debian's chromium (skipped without it, failed when
``TIERLAKE_REQUIRE_SERVICES=1``); their text is read back with ``pdf_text``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pdf_text import pdf_pages, pdf_text, pdf_title
from reports_lake import ReportsLake, shared_lake

from tierlake.bi.engine import BiEngine
from tierlake.bi.model import MASK, Principal
from tierlake.bi.reports import (
    ChromiumMissingError,
    ReportError,
    chromium_available,
    find_chromium,
    format_value,
    render_html,
    render_pdf,
)

pytestmark = pytest.mark.timeout(180)
ADMIN = Principal(email="admin@tierlake.test", role="admin")
ANALYST = Principal(email="analyst@tierlake.test", role="analyst")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> ReportsLake:
    return shared_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def engine(lake: ReportsLake) -> BiEngine:
    return BiEngine.from_settings(lake.settings)


@pytest.fixture
def chromium() -> Iterator[str]:
    if not chromium_available():
        message = "chromium is not installed: apt-get install -y chromium"
        if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield find_chromium()


def _leaks(text: str, emails: frozenset[str]) -> list[str]:
    lowered = text.lower()
    return sorted(e for e in emails if e.lower() in lowered)


def test_a_report_is_one_self_contained_file(engine: BiEngine) -> None:
    sales = engine.dashboard("sales")
    filters = engine.parse_filters(sales, {})
    html = render_html(engine, sales, filters, ADMIN)
    # Nothing is fetched: no external script, stylesheet, image or frame.
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:|//)""",
                         html, re.I)
    assert "plotly.js v" in html  # Plotly's build is inlined
    assert f"<title>{sales.title} report</title>" in html
    assert filters.start.isoformat() in html and filters.end.isoformat() in html
    assert "Data as of <b>" in html and "unknown" not in html.split("Data as of <b>")[1][:20]
    results = engine.run_dashboard(sales, filters, ADMIN)
    for r in results:  # every visual the page shows is in the report
        assert f'data-visual="{r.visual}"' in html
    kpi = next(r for r in results if sales.visual(r.visual).kind == "kpi")
    tile = html.split(f'data-visual="{kpi.visual}"', 1)[1][:400]
    assert format_value(kpi.value, sales.visual(kpi.visual).format) in tile
    charts = [r for r in results if r.figure is not None
              and sales.visual(r.visual).kind not in ("kpi", "table")]
    assert charts and f'data-charts="{len(charts)}"' in html


def test_the_filters_change_the_report(engine: BiEngine) -> None:
    sales = engine.dashboard("sales")
    month = render_html(engine, sales, engine.parse_filters(sales, {}), ADMIN)
    category = engine.categories(ADMIN)[0][0]
    narrowed = engine.parse_filters(sales, {"category": category})
    one = render_html(engine, sales, narrowed, ADMIN)
    assert f"Categories <b>{category}</b>" in one and "Categories <b>all</b>" in month
    value = engine.run_visual(sales, "revenue", narrowed, ADMIN).value
    assert format_value(value, sales.visual("revenue").format) in one


def test_an_analysts_report_shows_no_customer_email(lake: ReportsLake,
                                                    engine: BiEngine) -> None:
    found_for_admin = []
    for dashboard in engine.dashboards():
        filters = engine.parse_filters(dashboard, {})
        html = render_html(engine, dashboard, filters, ANALYST)
        assert _leaks(html, lake.emails) == [], dashboard.id
        if dashboard.id == "buyers":
            assert MASK in html
        found_for_admin += _leaks(render_html(engine, dashboard, filters, ADMIN), lake.emails)
    # The check can fail: an admin's report of the same dashboards does name customers.
    assert found_for_admin


def test_the_pdf_is_printed_after_the_charts_are_drawn(engine: BiEngine, chromium: str
                                                       ) -> None:
    sales = engine.dashboard("sales")
    html = render_html(engine, sales, engine.parse_filters(sales, {}), ADMIN)
    charts = int(re.search(r'data-charts="(\d+)"', html).group(1))  # type: ignore[union-attr]
    pdf = render_pdf(html)
    assert pdf.startswith(b"%PDF")
    assert pdf_pages(pdf) >= 1
    assert pdf_title(pdf) == f"{sales.title} report"
    text = pdf_text(pdf)
    assert sales.title in text
    assert f"Charts drawn: {charts} of {charts}." in text  # the JavaScript ran before print


def test_an_analysts_pdf_shows_no_customer_email(lake: ReportsLake, engine: BiEngine,
                                                 chromium: str) -> None:
    customers = engine.dashboard("buyers")
    filters = engine.parse_filters(customers, {})
    analyst_pdf = pdf_text(render_pdf(render_html(engine, customers, filters, ANALYST)))
    admin_pdf = pdf_text(render_pdf(render_html(engine, customers, filters, ADMIN)))
    assert customers.title in analyst_pdf
    assert _leaks(analyst_pdf, lake.emails) == []
    assert _leaks(admin_pdf, lake.emails)  # the text check sees e-mails when they are there


def _report_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tierlake-report-*")}


def test_a_print_that_runs_too_long_is_stopped_and_cleaned_up(engine: BiEngine,
                                                              chromium: str) -> None:
    sales = engine.dashboard("sales")
    html = render_html(engine, sales, engine.parse_filters(sales, {}), ADMIN)
    before = _report_dirs()
    with pytest.raises(ReportError, match="did not print the report within"):
        render_pdf(html, timeout=0.2)
    assert _report_dirs() <= before  # its page, profile and PDF are gone


def test_without_chromium_the_error_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import tierlake.bi.reports as reports

    monkeypatch.setattr(reports, "CHROMIUM_CANDIDATES", (str(tmp_path / "chromium"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumMissingError, match=r"apt-get install -y chromium"):
        render_pdf("<html></html>")


def test_values_are_shown_in_their_format() -> None:
    assert format_value(1234.5, "money") == "1,234.50"
    assert format_value(0.256, "percent") == "25.6 %"
    assert format_value(1500, "number") == "1,500"
    assert format_value(2.0 / 3, "number") == "0.67"
    assert format_value(41.5, "milliseconds") == "41.5 ms"
    assert format_value(None, "money") == "–"
    assert format_value("books", "text") == "books"


def test_a_burst_of_prints_all_succeed(chromium: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pages = [f"<!doctype html><title>Page {i}</title><h1>Report number {i}</h1>"
             for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        pdfs = list(pool.map(render_pdf, pages))
    assert [pdf_title(p) for p in pdfs] == ["Page 0", "Page 1", "Page 2"]
    assert all(f"Report number {i}" in pdf_text(p) for i, p in enumerate(pdfs))


def test_data_cannot_break_out_of_the_report(lake: ReportsLake, tmp_path: Path) -> None:
    """Text from the lake (a product name, say) is data in the report, never markup or
    script, in tables and in the figures' JSON alike."""
    evil = "</script><img src=x onerror=alert(1)>"
    (tmp_path / "evil.toml").write_text(f'''
id = "evil"
title = "Evil <b>title</b>"
filters = []
[[visuals]]
id = "names"
title = "Names"
kind = "table"
query = "SELECT '{evil}' AS name, count(*) AS lines FROM sales_lines"
tables = ["sales_lines"]
[[visuals]]
id = "chart"
title = "Chart"
kind = "bar"
query = "SELECT '{evil}' AS name, count(*) AS lines FROM sales_lines"
x = "name"
y = ["lines"]
tables = ["sales_lines"]
''')
    engine = BiEngine(lake.settings.resolved_lake_url, dashboards_dir=tmp_path)
    evil_board = engine.dashboard("evil")
    html = render_html(engine, evil_board, engine.parse_filters(evil_board, {}), ADMIN)
    assert evil not in html and "<img" not in html and "<b>title" not in html
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # the table cell
    assert "\\u003c/script\\u003e\\u003cimg" in html  # the figure's JSON


def test_a_category_managers_report_holds_only_their_category(engine: BiEngine) -> None:
    import json

    sales = engine.dashboard("sales")
    categories = dict(engine.categories(ADMIN))
    mine = sorted(categories)[0]
    manager = Principal(email="books@tierlake.test", role="analyst",
                        rules={"category_slug": frozenset({mine})})
    html = render_html(engine, sales, engine.parse_filters(sales, {}), manager)
    figure = json.loads(html.split('id="figure-data-revenue_by_category">', 1)[1]
                        .split("</script>", 1)[0])
    shown = {x for trace in figure["data"] for x in trace["x"]}
    assert shown == {categories[mine]}
    total = engine.run_visual(sales, "revenue", engine.parse_filters(sales, {}), ADMIN).value
    theirs = engine.run_visual(sales, "revenue", engine.parse_filters(sales, {}), manager).value
    assert format_value(theirs, "money") in html and theirs < total
