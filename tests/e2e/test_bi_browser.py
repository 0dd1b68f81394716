"""The BI tier in a real browser (Playwright driving Debian's Chromium) against a real
`tierlake serve bi` process over a lake the real pipeline built.

An admin logs in, opens every dashboard (screenshots kept in test-artifacts/), changes the
date range and the category and sees the figures change, drills down and back (the page's
link and the browser's button), downloads a CSV and uses the SQL page. An analyst never
sees a customer's e-mail (page text, the JSON and CSV behind every visual, drill-to-detail,
the SQL page); a category manager never sees another category's rows.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from servers import free_port
from tierlake.bi.users import UserStore
from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.pipeline.run import run_pipeline
from tierlake.seed import seed_store

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
NOW = datetime(2026, 3, 20, 15, 45, tzinfo=UTC)  # the seeded history's end (pinned)
ADMIN = ("admin@tierlake.local", "admin-password")  # the first admin: local-mode defaults
ANALYST = ("analyst@bi.example", "analyst-password-1")
MANAGER = ("books@bi.example", "books-password-1")


@dataclass
class BiSystem:
    url: str
    settings: Settings
    emails: set[str]
    categories: list[str]  # slugs, by revenue
    manager_category: str


def _seed_and_run(data_dir: Path) -> tuple[Settings, set[str], list[str]]:
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True)
    db = Database(settings.resolved_database_url)
    try:
        migrate.upgrade(db.engine)
        seed_store(db, products=40, customers=150, orders=1500, months=6, seed=7,
                   events_dir=settings.resolved_events_dir, admin_email="owner@store.example",
                   admin_password="store-password-1", progress=False, now=NOW)
        with db.engine.connect() as conn:
            emails = {str(r[0]) for r in conn.execute(
                text("SELECT email FROM customers WHERE email IS NOT NULL"))}
            slugs = [str(r[0]) for r in conn.execute(text(
                "SELECT c.slug FROM categories c JOIN products p ON p.category_id = c.id "
                "JOIN order_lines l ON l.product_id = p.id GROUP BY c.slug "
                "ORDER BY SUM(l.quantity) DESC"))]
    finally:
        db.dispose()
    run_pipeline(settings, progress=False)
    return settings, emails, slugs


@pytest.fixture(scope="module")
def bi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BiSystem]:
    base = tmp_path_factory.mktemp("bi-browser")
    settings, emails, slugs = _seed_and_run(base / "var")
    users = UserStore(settings.resolved_bi_database_url)
    users.create_tables()
    users.add_user(*ANALYST, role="analyst", name="Ann Analyst")
    users.add_user(*MANAGER, role="analyst", name="Category Manager")
    users.set_rule("category_slug", [slugs[1]], user=MANAGER[0])
    users.dispose()
    port = free_port()
    log = base / "bi.log"
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(settings.data_dir),
           "PYTHONPATH": str(ROOT / "src")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tierlake", "serve", "bi", "--port",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tierlake serve bi did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield BiSystem(url, settings, emails, slugs, slugs[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)




def _page(browser: Any, errors: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1360, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A fetch still running when the page navigates away is aborted: not a failure.
    page.on("requestfailed", lambda req: None if "ERR_ABORTED" in (req.failure or "")
            else errors.append(f"failed: {req.url} {req.failure}"))
    return page


def _login(page: Any, bi: BiSystem, who: tuple[str, str]) -> None:
    from playwright.sync_api import expect

    page.goto(f"{bi.url}/bi/")
    expect(page).to_have_url(re.compile(r"/bi/login"))
    page.fill("#email", who[0])
    page.fill("#password", who[1])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("whoami")).to_be_visible()


def _ready(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#grid")).to_have_attribute("data-state", "ready")


def _kpi(page: Any, visual: str) -> str:
    text_value: str = page.locator(f"[data-visual={visual}] [data-testid=kpi-value]").inner_text()
    return text_value


def _first_bar(page: Any, visual: str) -> tuple[float, float]:
    """The middle of the visual's first bar, on screen. Plotly's drag layer lies over the
    bars and turns the mouse there into hover and click events, so the mouse goes there."""
    bar = page.locator(f"[data-visual={visual}] .chart .point path").first
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    assert box, f"{visual} has no bar"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_an_admin_browses_filters_drills_downloads_and_queries(browser: Any,
                                                               bi: BiSystem) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _login(page, bi, ADMIN)
    links = page.get_by_test_id("dashboard-link")
    ids = [links.nth(i).get_attribute("data-dashboard") for i in range(links.count())]
    assert "sales" in ids
    ARTIFACTS.mkdir(exist_ok=True)
    for dashboard_id in ids:
        page.goto(f"{bi.url}/bi/dashboards/{dashboard_id}")
        _ready(page)
        expect(page.locator("[data-testid=visual-error]")).to_have_count(0)
        expect(page.get_by_test_id("freshness")).to_contain_text("data as of")
        page.screenshot(path=str(ARTIFACTS / f"bi-{dashboard_id}.png"), full_page=True)

    # The date range and the category change the figures, and live in the URL.
    page.goto(f"{bi.url}/bi/dashboards/sales")
    _ready(page)
    whole = _kpi(page, "revenue")
    change = page.locator("[data-visual=revenue] [data-testid=kpi-change]")
    expect(change).to_have_text(re.compile(r"^[▲▼▬] [+-]?[\d,.]+ % vs previous period$"))
    end = page.get_by_test_id("filter-end").input_value()
    page.get_by_test_id("filter-start").fill(end)
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(rf"start={end}"))
    _ready(page)
    one_day = _kpi(page, "revenue")
    assert one_day != whole
    expect(page.get_by_test_id("filter-summary")).to_contain_text("(1 day)")
    page.goto(f"{bi.url}/bi/dashboards/sales")
    _ready(page)
    page.get_by_test_id("filter-category").select_option([bi.categories[0]])
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(rf"category={bi.categories[0]}"))
    _ready(page)
    assert _kpi(page, "revenue") != whole
    shared = page.url
    other = _page(browser, errors)
    _login(other, bi, ADMIN)
    other.goto(shared)
    _ready(other)
    assert _kpi(other, "revenue") == _kpi(page, "revenue")
    other.context.close()

    # Drill down from a category to its products, see the order lines behind it, go back.
    page.goto(f"{bi.url}/bi/dashboards/sales")
    _ready(page)
    # Hover details first, then a click on the same bar.
    x, y = _first_bar(page, "revenue_by_category")
    page.mouse.move(x, y)
    hover = page.locator("[data-visual=revenue_by_category] .hoverlayer")
    expect(hover.locator(".hovertext")).to_have_count(1)
    assert (hover.text_content() or "").strip()  # the hovertemplate's text (SVG)
    page.mouse.click(x, y)
    expect(page).to_have_url(re.compile(r"drill\.category=[a-z0-9-]+"))
    _ready(page)
    expect(page.locator("[data-visual=revenue_by_product]")).to_be_visible()
    expect(page.locator("[data-visual=revenue_by_category]")).to_have_count(0)
    expect(page.get_by_test_id("detail-table").locator("tbody tr").first).to_be_visible()
    drilled = page.url
    # The browser's back button returns to the categories, forward to the products...
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"drill\."))
    _ready(page)
    expect(page.locator("[data-visual=revenue_by_category]")).to_be_visible()
    page.go_forward()
    expect(page).to_have_url(drilled)
    _ready(page)
    expect(page.locator("[data-visual=revenue_by_product]")).to_be_visible()
    # ... and so does the page's own back link.
    page.get_by_test_id("drill-back").click()
    expect(page).not_to_have_url(re.compile(r"drill\."))
    _ready(page)
    expect(page.locator("[data-visual=revenue_by_category]")).to_be_visible()

    # A visual's CSV, as the page's filters show it.
    with page.expect_download() as download:
        page.locator("[data-visual=revenue_by_category] [data-testid=csv-link]").click()
    saved = download.value.path()
    rows = list(csv.reader(io.StringIO(Path(saved).read_text())))
    assert "category_slug" in rows[0] and "revenue" in rows[0]
    assert len(rows) > 2
    assert download.value.suggested_filename == "sales-revenue_by_category.csv"

    # The SQL page: a table, a quick chart, a CSV; a write refused with a message.
    page.get_by_test_id("nav-sql").click()
    expect(page.get_by_test_id("sql-tables")).to_contain_text("sales_lines")
    page.get_by_test_id("sql-text").fill(
        "SELECT category_slug, SUM(line_total_cents) / 100.0 AS revenue FROM sales_lines "
        "GROUP BY 1 ORDER BY 2 DESC")
    page.get_by_test_id("sql-run").click()
    expect(page.get_by_test_id("sql-result").locator("tbody tr")).to_have_count(
        len(bi.categories))
    expect(page.get_by_test_id("sql-chart")).to_have_attribute("data-state", "ready")
    with page.expect_download() as download:
        page.get_by_test_id("sql-csv").click()
    assert Path(download.value.path()).read_text().startswith("category_slug,revenue")
    page.get_by_test_id("sql-text").fill("DELETE FROM sales_lines")
    page.get_by_test_id("sql-run").click()
    expect(page.get_by_test_id("sql-error")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "bi-sql-refused.png"), full_page=True)

    # A new version of the lake redraws the open dashboard by itself.
    page.goto(f"{bi.url}/bi/dashboards/sales")
    _ready(page)
    expect(page.locator("#grid")).to_have_attribute("data-draws", "1")
    run_pipeline(bi.settings, progress=False)
    # The run commits its tables one by one: the page redraws once or a few times.
    expect(page.locator("#grid")).not_to_have_attribute("data-draws", "1", timeout=30_000)
    _ready(page)

    # A bad filter in the URL is a message on the page, not an error page.
    page.goto(f"{bi.url}/bi/dashboards/sales?start=2026-03-10&end=2026-03-01")
    expect(page.get_by_test_id("filter-error")).to_contain_text("after the end date")
    expect(page.get_by_test_id("filter-bar")).to_be_visible()
    assert not errors, errors


def test_an_analyst_never_sees_a_customer_email(browser: Any, bi: BiSystem) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    _login(page, bi, ANALYST)
    seen: dict[str, str] = {}
    links = page.get_by_test_id("dashboard-link")
    ids = [links.nth(i).get_attribute("data-dashboard") for i in range(links.count())]
    for dashboard_id in ids:
        page.goto(f"{bi.url}/bi/dashboards/{dashboard_id}")
        _ready(page)
        seen[page.url] = page.locator("body").inner_text()
        info = page.request.get(f"{bi.url}/bi/api/dashboards/{dashboard_id}").json()
        for visual in info["visuals"]:
            api = f"{bi.url}/bi/api/dashboards/{dashboard_id}/visuals/{visual['id']}"
            seen[api] = page.request.get(api).text()
            seen[api + ".csv"] = page.request.get(api + ".csv").text()
    # The order lines behind a category (drill-to-detail), as the page shows them.
    page.goto(f"{bi.url}/bi/dashboards/sales?drill.category={bi.categories[0]}")
    _ready(page)
    assert page.get_by_test_id("detail-table").locator("tbody tr").count() > 0
    seen[page.url] = page.locator("body").inner_text()
    # The SQL page, on the table that holds the identities.
    page.goto(f"{bi.url}/bi/sql?q=SELECT%20*%20FROM%20customer_directory")
    seen[page.url] = page.locator("body").inner_text()
    assert "masked" in seen[page.url]
    for where, content in seen.items():
        leaked = [e for e in bi.emails if e in content]
        assert not leaked, (where, leaked[:3])
    assert not errors, errors


def test_a_category_manager_sees_only_their_category(browser: Any, bi: BiSystem) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _login(page, bi, MANAGER)
    page.goto(f"{bi.url}/bi/dashboards/sales")
    _ready(page)
    options = page.get_by_test_id("filter-category").locator("option")
    assert [options.nth(i).get_attribute("value") for i in range(options.count())] == [
        bi.manager_category]
    by_category = page.request.get(
        f"{bi.url}/bi/api/dashboards/sales/visuals/revenue_by_category").json()
    slugs = {row[by_category["columns"].index("category_slug")] for row in by_category["rows"]}
    assert slugs == {bi.manager_category}
    expect(page.locator("[data-visual=revenue_by_category] .chart .point path")).to_have_count(1)
    page.goto(f"{bi.url}/bi/sql?q=SELECT%20DISTINCT%20category_slug%20FROM%20sales_lines")
    cells = page.get_by_test_id("sql-result").locator("tbody td")
    assert cells.all_inner_texts() == [bi.manager_category]
    page.goto(f"{bi.url}/bi/dashboards/sales?category={bi.categories[0]}")
    expect(page.get_by_test_id("filter-error")).to_contain_text("unknown category")
    assert not errors, errors
