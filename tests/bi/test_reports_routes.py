"""The export, Mail and Alerts pages through the BI app (in-process ASGI client, the real
engine over a real lake, a real SMTP catcher), logged in as an admin and as an analyst."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from pdf_text import pdf_text
from reports_lake import ReportsLake, shared_lake

from tierlake.bi import report_routes
from tierlake.bi.alerts import AlertScheduler
from tierlake.bi.app import create_app
from tierlake.bi.engine import BiEngine
from tierlake.bi.mail import Attachment, MailCatcher, list_messages, mail_dir, send
from tierlake.bi.model import MASK, Principal
from tierlake.bi.reports import chromium_available
from tierlake.bi.users import UserStore

pytestmark = pytest.mark.timeout(180)
ANALYST = ("analyst@tierlake.test", "analyst-password-1")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> ReportsLake:
    return shared_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def engine(lake: ReportsLake) -> BiEngine:
    return BiEngine.from_settings(lake.settings)


@pytest.fixture(scope="module")
def app_client(lake: ReportsLake, engine: BiEngine) -> Iterator[TestClient]:
    app = create_app(lake.settings, engine)
    app.include_router(report_routes.router, prefix="/bi")  # as the lead wires it
    with TestClient(app, base_url="http://127.0.0.1") as client:
        UserStore(lake.settings.resolved_bi_database_url).add_user(
            *ANALYST, role="analyst", name="Ana Lyst")
        yield client


def _login(client: TestClient, email: str, password: str) -> None:
    client.cookies.clear()
    r = client.post("/bi/api/session", json={"email": email, "password": password})
    assert r.status_code == 200, r.text


@pytest.fixture
def admin(app_client: TestClient, lake: ReportsLake) -> TestClient:
    _login(app_client, lake.settings.admin_email,
           lake.settings.admin_password.get_secret_value())
    return app_client


@pytest.fixture
def analyst(app_client: TestClient) -> TestClient:
    _login(app_client, *ANALYST)
    return app_client


def _leaks(text: str, emails: frozenset[str]) -> list[str]:
    return sorted(e for e in emails if e.lower() in text.lower())


def test_export_html_downloads_the_view_of_the_url(admin: TestClient,
                                                   engine: BiEngine) -> None:
    category = engine.categories(Principal(email="a@tierlake.test", role="admin"))[0][0]
    r = admin.get(f"/bi/dashboards/sales/report.html?category={quote(category)}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="sales-') and '.html"' in disposition
    assert "<title>Sales report</title>" in r.text
    assert f"Categories <b>{category}</b>" in r.text


def test_an_analysts_exports_show_no_customer_email(analyst: TestClient,
                                                    lake: ReportsLake) -> None:
    html = analyst.get("/bi/dashboards/buyers/report.html")
    assert html.status_code == 200 and _leaks(html.text, lake.emails) == []
    assert MASK in html.text
    if chromium_available():
        pdf = analyst.get("/bi/dashboards/buyers/report.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"
        text = pdf_text(pdf.content)
        assert "Top buyers" in text and MASK in text and _leaks(text, lake.emails) == []
    elif os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
        pytest.fail("chromium is not installed: apt-get install -y chromium")


def test_bad_filters_and_unknown_dashboards_get_a_message(admin: TestClient) -> None:
    r = admin.get("/bi/dashboards/sales/report.html?start=2026-11-20&end=2026-11-01")
    assert r.status_code == 400
    assert "after the end date" in r.text and "<title>" in r.text
    r = admin.get("/bi/dashboards/sales/report.pdf?category=%27;drop%20table%20x")
    assert r.status_code == 400 and "unknown category" in r.text
    r = admin.get("/bi/dashboards/nope/report.html")
    assert r.status_code == 404 and "nope" in r.text


def test_exports_need_a_login(app_client: TestClient) -> None:
    app_client.cookies.clear()
    r = app_client.get("/bi/dashboards/sales/report.html", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and "/bi/login" in r.headers["location"]


def test_the_dashboard_page_links_its_exports(admin: TestClient) -> None:
    page = admin.get("/bi/dashboards/sales?start=2026-11-01&end=2026-11-30")
    assert 'data-testid="export-html"' in page.text
    assert "/bi/dashboards/sales/report.pdf?start=2026-11-01&amp;end=2026-11-30" in page.text


def test_the_mail_page_lists_and_shows_what_was_sent(admin: TestClient,
                                                     lake: ReportsLake) -> None:
    settings = lake.settings
    with MailCatcher("127.0.0.1", settings.bi.smtp_port, mail_dir(settings)):
        send(settings, ["boss@tierlake.test"], "Weekly sales", "<h1>Hello boss</h1>",
             [Attachment("sales.html", b"<html>the report</html>", "text/html")])
    key = list_messages(mail_dir(settings))[0].key
    page = admin.get("/bi/mail")
    assert page.status_code == 200
    assert "Weekly sales" in page.text and "boss@tierlake.test" in page.text
    message = admin.get(f"/bi/mail/{key}")
    assert message.status_code == 200
    assert "Hello boss" in message.text and 'sandbox=""' in message.text
    attachment = admin.get(f"/bi/mail/{key}/attachments/0")
    assert attachment.content == b"<html>the report</html>"
    assert attachment.headers["content-disposition"] == 'attachment; filename="sales.html"'
    assert "sandbox" in attachment.headers["content-security-policy"]
    assert admin.get(f"/bi/mail/{key}/attachments/5").status_code == 404
    assert admin.get("/bi/mail/..%2F..%2Fetc").status_code == 404


def test_mail_and_alerts_are_for_admins(analyst: TestClient) -> None:
    assert analyst.get("/bi/mail").status_code == 403
    assert analyst.get("/bi/alerts").status_code == 403


def test_the_alerts_page_shows_each_alert_and_its_state(admin: TestClient, lake: ReportsLake,
                                                       engine: BiEngine) -> None:
    settings = lake.settings
    path = settings.data_dir / "bi-alerts.toml"
    path.write_text("""
[[alert]]
name = "lines-above"
sql = "SELECT count(*) FROM sales_lines"
condition = "above"
threshold = 1
to = ["ops@tierlake.test"]

[[report]]
name = "sales-daily"
dashboard = "sales"
at = "07:00"
to = ["boss@tierlake.test"]
""")
    try:
        with MailCatcher("127.0.0.1", settings.bi.smtp_port, mail_dir(settings)):
            AlertScheduler(settings, engine).check_once()
        page = admin.get("/bi/alerts")
        assert page.status_code == 200
        assert 'data-state="ALARM"' in page.text and "lines-above" in page.text
        assert "daily at 07:00 UTC" in page.text
        path.write_text('[[alert]]\nname = "x"\n')
        broken = admin.get("/bi/alerts")
        assert broken.status_code == 200 and str(path) in broken.text
        assert 'data-testid="alerts-error"' in broken.text
    finally:
        path.unlink()


def test_no_alerts_file_means_none(admin: TestClient, lake: ReportsLake) -> None:
    assert not (lake.settings.data_dir / "bi-alerts.toml").exists()
    page = admin.get("/bi/alerts")
    assert 'data-testid="alerts-none"' in page.text


def test_without_chromium_the_pdf_link_says_what_to_install(
        admin: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tierlake.bi import reports

    monkeypatch.setattr(reports, "CHROMIUM_CANDIDATES", (str(tmp_path / "chromium"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    r = admin.get("/bi/dashboards/sales/report.pdf")
    assert r.status_code == 503
    assert "apt-get install -y chromium" in r.text and "<title>" in r.text


def test_a_category_manager_cannot_export_another_category(app_client: TestClient,
                                                           lake: ReportsLake,
                                                           engine: BiEngine) -> None:
    slugs = sorted(dict(engine.categories(Principal(email="a@tierlake.test", role="admin"))))
    users = UserStore(lake.settings.resolved_bi_database_url)
    users.add_user("manager@tierlake.test", "manager-password-1", role="analyst")
    users.set_rule("category_slug", [slugs[0]], user="manager@tierlake.test")
    _login(app_client, "manager@tierlake.test", "manager-password-1")
    theirs = app_client.get(f"/bi/dashboards/sales/report.html?category={slugs[0]}")
    assert theirs.status_code == 200
    other = app_client.get(f"/bi/dashboards/sales/report.html?category={slugs[1]}")
    assert other.status_code == 400 and "unknown category" in other.text
