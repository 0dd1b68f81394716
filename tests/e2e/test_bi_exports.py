"""Export a dashboard as HTML and PDF by clicking, in a real browser (Playwright driving
Debian's chromium) against the BI tier running as its own process over a real lake.

The downloaded report and PDF are kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bi"))
from pdf_text import pdf_text, pdf_title
from reports_lake import ReportsLake, build_lake

from servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SERVER = Path(__file__).with_name("bi_exports_server.py")
@dataclass
class BiServer:
    url: str
    lake: ReportsLake
    log: Path


@pytest.fixture(scope="module")
def bi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BiServer]:
    root = tmp_path_factory.mktemp("bi-exports")
    lake = build_lake(root)
    port = free_port()
    log = root / "bi.log"
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(lake.settings.data_dir),
           "TIERLAKE_ADMIN_EMAIL": lake.settings.admin_email,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the BI server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the BI server did not answer within 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield BiServer(url, lake, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()




def test_export_a_dashboard_as_html_and_pdf(browser, bi_server: BiServer) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{bi_server.url}/bi/login")
    page.fill("#email", bi_server.lake.settings.admin_email)
    page.fill("#password", bi_server.lake.settings.admin_password.get_secret_value())
    page.get_by_test_id("login-submit").click()
    page.goto(f"{bi_server.url}/bi/dashboards/sales")
    expect(page.get_by_test_id("dashboard-title")).to_have_text("Sales")
    start = page.get_by_test_id("filter-start").input_value()
    end = page.get_by_test_id("filter-end").input_value()

    ARTIFACTS.mkdir(exist_ok=True)
    with page.expect_download() as html_download:
        page.get_by_test_id("export-html").click()
    html_path = ARTIFACTS / "bi-export-sales.html"
    html_download.value.save_as(html_path)
    html = html_path.read_text()
    assert html_download.value.suggested_filename.endswith(".html")
    assert "<title>Sales report</title>" in html and start in html and end in html

    with page.expect_download() as pdf_download:
        page.get_by_test_id("export-pdf").click()
    pdf_path = ARTIFACTS / "bi-export-sales.pdf"
    pdf_download.value.save_as(pdf_path)
    pdf = pdf_path.read_bytes()
    assert pdf.startswith(b"%PDF") and pdf_title(pdf) == "Sales report"
    assert "Charts drawn:" in pdf_text(pdf)

    # The downloaded report opens offline and draws its charts by itself.
    offline = context.new_page()
    offline.route("**/*", lambda route: route.abort()
                  if not route.request.url.startswith("file:") else route.continue_())
    offline.goto(html_path.as_uri())
    expect(offline.get_by_test_id("charts-status")).to_contain_text("Charts drawn:")
    offline.screenshot(path=str(ARTIFACTS / "bi-export-sales.png"), full_page=True)
    assert not errors, errors
    context.close()
