"""The BI tier's app over a real lake: pages, the JSON and CSV behind every visual, filters in
the URL, drills, the SQL page, roles, masks and row rules.

One small store per module (pinned seed and end of history: ``engine_lake``), extracted and
run through the curated jobs into a temporary lake; the app runs in-process (ASGI) with the
real engine over it, as `tierlake serve bi` builds it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engine_lake import build_bi_lake
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tierlake.bi.app import create_app
from tierlake.bi.model import Dashboard, Visual
from tierlake.bi.users import UserStore
from tierlake.config import Settings

ADMIN = ("boss@bi.example", "boss-password-1")
ANALYST = ("analyst@bi.example", "analyst-password-1")
RULED = ("cm@bi.example", "category-password-1")


@dataclass
class Lake:
    settings: Settings
    emails: set[str]  # every customer e-mail in the store: an analyst must never see one


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    built = build_bi_lake(tmp_path_factory.mktemp("bi-app"))
    settings = built.settings.model_copy(update={
        "admin_email": ADMIN[0], "admin_password": SecretStr(ADMIN[1])})
    return Lake(settings, built.emails())


@pytest.fixture(scope="module")
def app(lake: Lake) -> Iterator[Any]:
    application = create_app(lake.settings)
    with TestClient(application, base_url="http://127.0.0.1"):  # runs the start-up
        users: UserStore = application.state.users
        users.add_user(*ANALYST, role="analyst", name="Ann Analyst")
        users.add_user(*RULED, role="analyst", name="Cat Manager")
        yield application


def _login(app: Any, who: tuple[str, str]) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    r = client.post("/bi/api/session", json={"email": who[0], "password": who[1]})
    assert r.status_code == 200, r.text
    return client


@pytest.fixture(scope="module")
def admin(app: Any) -> TestClient:
    return _login(app, ADMIN)


@pytest.fixture(scope="module")
def analyst(app: Any) -> TestClient:
    return _login(app, ANALYST)


def _dashboards(app: Any) -> list[Dashboard]:
    return list(app.state.engine.dashboards())


def _kpi(dashboard: Dashboard) -> Visual:
    return next(v for v in dashboard.visuals if v.kind == "kpi" and v.compare)


def _drill_down(app: Any) -> tuple[Dashboard, Visual]:
    for d in _dashboards(app):
        for v in d.visuals:
            if v.drill is not None and v.drill.to and not v.hidden:
                return d, v
    raise AssertionError("no dashboard declares a drill-down")


def test_root_health_and_ready(app: Any, tmp_path: Path) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/bi/"
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["lake"]["ok"] is True
        page = c.get("/bi/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/bi/login?next=%2Fbi%2F"
        api = c.get("/bi/api/dashboards")
        assert api.status_code == 401 and api.json()["error"]["code"] == "not_authenticated"
        assert "content-security-policy" in api.headers
    empty = Settings(data_dir=tmp_path / "empty")
    empty.data_dir.mkdir()
    with TestClient(create_app(empty), base_url="http://127.0.0.1") as c:
        not_ready = c.get("/ready")
        assert not_ready.status_code == 503
        assert "tierlake pipeline run" in not_ready.json()["checks"]["lake"]["detail"]


def test_every_dashboard_and_visual_answers_for_admin_and_analyst(
        app: Any, admin: TestClient, analyst: TestClient) -> None:
    listed = admin.get("/bi/api/dashboards").json()
    assert {d["id"] for d in listed} == {d.id for d in _dashboards(app)}
    home = admin.get("/bi/")
    assert home.status_code == 200
    for d in _dashboards(app):
        assert f'href="/bi/dashboards/{d.id}"' in home.text
        page = admin.get(f"/bi/dashboards/{d.id}")
        assert page.status_code == 200, page.text[:500]
        assert '<script src="/bi/static/plotly.min.js">' in page.text
        for v in d.visuals:
            for client in (admin, analyst):
                r = client.get(f"/bi/api/dashboards/{d.id}/visuals/{v.id}")
                assert r.status_code == 200, (d.id, v.id, r.text[:300])
                body = r.json()
                assert body["visual"] == v.id and len(body["columns"]) > 0
                if v.kind in ("line", "bar", "pie", "heatmap", "funnel") and body["rows"]:
                    assert body["figure"]["data"], (d.id, v.id)
    plotly = admin.get("/bi/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000


def _everything(client: TestClient, app: Any) -> dict[str, str]:
    """Every page, visual JSON and CSV, and drill-to-detail this client can see, by URL."""
    seen: dict[str, str] = {}
    for d in _dashboards(app):
        seen[f"/bi/dashboards/{d.id}"] = client.get(f"/bi/dashboards/{d.id}").text
        for v in d.visuals:
            url = f"/bi/api/dashboards/{d.id}/visuals/{v.id}"
            answer = client.get(url)
            seen[url], seen[url + ".csv"] = answer.text, client.get(url + ".csv").text
            if v.drill is not None and v.drill.detail and answer.json()["rows"]:
                body = answer.json()
                for row in body["rows"][:3]:
                    value = row[body["columns"].index(v.drill.column)]
                    detail = client.get(url + "/detail", params={"value": str(value)})
                    seen[f"{url}/detail?value={value}"] = detail.text
    return seen


def test_an_analyst_never_sees_a_customer_email(
        app: Any, lake: Lake, admin: TestClient, analyst: TestClient) -> None:
    assert len(lake.emails) >= 50
    for url, text in _everything(analyst, app).items():
        leaked = [e for e in lake.emails if e in text]
        assert not leaked, (url, leaked[:3])
    # The same answers show e-mails to an admin: the search above can find them.
    assert any(e in text for text in _everything(admin, app).values() for e in lake.emails)
    # The SQL page and API: every column of every table, masked the same way.
    for table in app.state.engine.sql_tables():
        q = f"SELECT * FROM {table['name']} LIMIT 500"
        page = analyst.get("/bi/sql", params={"q": q})
        api = analyst.post("/bi/api/sql", json={"sql": q})
        assert page.status_code in (200, 400) and api.status_code in (200, 400)
        leaked = [e for e in lake.emails if e in page.text or e in api.text]
        assert not leaked, (table["name"], leaked[:3])


def test_filters_in_the_url_change_the_figures(app: Any, admin: TestClient) -> None:
    sales = app.state.engine.dashboard("sales")
    kpi = _kpi(sales)
    url = f"/bi/api/dashboards/sales/visuals/{kpi.id}"
    default = admin.get(url).json()
    filters = admin.get("/bi/api/dashboards/sales/filters").json()
    narrow = admin.get(url, params={"start": filters["end"], "end": filters["end"]}).json()
    assert default["value"] != narrow["value"]
    assert default["previous"] is not None and default["change"] is not None
    slugs = [c["slug"] for c in admin.get("/bi/api/categories").json()]
    assert len(slugs) >= 2
    one = admin.get(url, params={"category": slugs[0]}).json()
    both = admin.get(url, params=[("category", slugs[0]), ("category", slugs[1])]).json()
    assert one["value"] != default["value"] and both["value"] != one["value"]
    # The page shows the filters it applied, and a shared URL shows the same view.
    page = admin.get("/bi/dashboards/sales", params={"start": filters["end"],
                                                     "end": filters["end"],
                                                     "category": slugs[0]})
    assert f'value="{filters["end"]}"' in page.text
    assert re.search(rf'<option value="{slugs[0]}" selected>', page.text)


@pytest.mark.parametrize(("params", "message"), [
    ({"start": "2026-11-30", "end": "2026-11-01"}, "after the end date"),
    ({"start": "30/11/2026"}, "30/11/2026"),
    ({"category": "no-such-category"}, "unknown category"),
    ({"category": "books'; DROP TABLE sales_lines; --"}, "unknown category"),
    ({"drill.nothing": "x"}, "no drill"),
])
def test_bad_filters_get_the_engines_message_never_an_error_page(
        admin: TestClient, params: dict[str, str], message: str) -> None:
    api = admin.get("/bi/api/dashboards/sales/visuals/revenue", params=params)
    assert api.status_code == 400
    assert api.json()["error"]["code"] == "bad_filter"
    assert message in api.json()["error"]["message"]
    page = admin.get("/bi/dashboards/sales", params=params)
    assert page.status_code == 400
    assert 'data-testid="filter-error"' in page.text and 'data-testid="filter-bar"' in page.text
    shown = re.search(r'data-testid="filter-error">([^<]*)<', page.text)
    assert shown and message in shown.group(1).replace("&#39;", "'")
    csv_answer = admin.get("/bi/api/dashboards/sales/visuals/revenue.csv", params=params)
    assert csv_answer.status_code == 400


def test_drill_down_and_back_and_drill_to_detail(app: Any, admin: TestClient) -> None:
    dashboard, top = _drill_down(app)
    assert top.drill is not None and top.drill.to
    rows = admin.get(f"/bi/api/dashboards/{dashboard.id}/visuals/{top.id}").json()
    first = rows["rows"][0][rows["columns"].index(top.drill.column)]
    page = admin.get(f"/bi/dashboards/{dashboard.id}",
                     params={f"drill.{top.drill.param}": str(first)})
    assert page.status_code == 200
    assert f'data-visual="{top.drill.to}"' in page.text
    assert f'data-visual="{top.id}"' not in page.text
    back = re.search(r'href="([^"]*)" data-testid="drill-back"', page.text)
    assert back and "drill." not in back.group(1)
    # The next level is narrowed to the clicked value.
    lower = admin.get(f"/bi/api/dashboards/{dashboard.id}/visuals/{top.drill.to}",
                      params={f"drill.{top.drill.param}": str(first)}).json()
    everything = admin.get(f"/bi/api/dashboards/{dashboard.id}/visuals/{top.drill.to}").json()
    assert 0 < len(lower["rows"]) <= len(everything["rows"])
    with_detail = next((v for v in (top, dashboard.visual(top.drill.to))
                        if v.drill is not None and v.drill.detail), None)
    assert with_detail is not None and with_detail.drill is not None
    source = admin.get(f"/bi/api/dashboards/{dashboard.id}/visuals/{with_detail.id}",
                       params={f"drill.{top.drill.param}": str(first)}).json()
    value = source["rows"][0][source["columns"].index(with_detail.drill.column)]
    detail = admin.get(f"/bi/api/dashboards/{dashboard.id}/visuals/{with_detail.id}/detail",
                       params={"value": str(value)})
    assert detail.status_code == 200, detail.text
    assert len(detail.json()["rows"]) > 0


def test_csv_holds_the_same_rows_as_the_json(app: Any, admin: TestClient) -> None:
    dashboard, visual = _drill_down(app)
    url = f"/bi/api/dashboards/{dashboard.id}/visuals/{visual.id}"
    body = admin.get(url).json()
    answer = admin.get(url + ".csv")
    assert answer.headers["content-type"].startswith("text/csv")
    assert f'filename="{dashboard.id}-{visual.id}.csv"' in answer.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(table[0]) == tuple(body["columns"])
    assert len(table) - 1 == len(body["rows"])
    assert [str(v) for v in body["rows"][0]] == table[1]


def test_the_sql_page_runs_reads_and_refuses_writes(admin: TestClient) -> None:
    q = ("SELECT category_slug, SUM(line_total_cents) AS cents FROM sales_lines "
         "GROUP BY 1 ORDER BY 2 DESC")
    page = admin.get("/bi/sql", params={"q": q})
    assert page.status_code == 200, page.text[-500:]
    assert 'data-testid="sql-result"' in page.text and 'id="sql-chart-data"' in page.text
    assert 'data-testid="sql-table"' in page.text
    api = admin.post("/bi/api/sql", json={"sql": q}).json()
    assert api["columns"] == ["category_slug", "cents"] and len(api["rows"]) >= 2
    csv_answer = admin.get("/bi/api/sql.csv", params={"q": q})
    assert csv_answer.status_code == 200 and csv_answer.text.startswith("category_slug,cents")
    for bad in ("DELETE FROM sales_lines", "COPY sales_lines TO '/tmp/x.csv'",
                "SELECT * FROM read_csv('/etc/passwd')", "ATTACH '/tmp/x.db' AS x"):
        refused = admin.get("/bi/sql", params={"q": bad})
        assert refused.status_code == 400
        assert 'data-testid="sql-error"' in refused.text
        answer = admin.post("/bi/api/sql", json={"sql": bad})
        assert answer.status_code == 400 and answer.json()["error"]["message"]


def test_a_category_rule_user_sees_only_their_categories(app: Any, admin: TestClient) -> None:
    slugs = [c["slug"] for c in admin.get("/bi/api/categories").json()]
    mine, other = slugs[0], slugs[1]
    users: UserStore = app.state.users
    users.set_rule("category_slug", [mine], user=RULED[0])
    ruled = _login(app, RULED)
    assert [c["slug"] for c in ruled.get("/bi/api/categories").json()] == [mine]
    q = "SELECT DISTINCT category_slug FROM sales_lines"
    assert ruled.post("/bi/api/sql", json={"sql": q}).json()["rows"] == [[mine]]
    # Another category reads as unknown, on the page and in the JSON.
    refused = ruled.get("/bi/api/dashboards/sales/visuals/revenue", params={"category": other})
    assert refused.status_code == 400 and "unknown category" in refused.json()["error"]["message"]
    page = ruled.get("/bi/dashboards/sales")
    assert f'<option value="{mine}"' in page.text and f'<option value="{other}"' not in page.text
    kpi = _kpi(app.state.engine.dashboard("sales"))
    own = ruled.get(f"/bi/api/dashboards/sales/visuals/{kpi.id}").json()["value"]
    as_admin = admin.get(f"/bi/api/dashboards/sales/visuals/{kpi.id}",
                         params={"category": mine}).json()["value"]
    assert own == as_admin
    # A change of rule applies on the next request.
    users.set_rule("category_slug", [other], user=RULED[0])
    assert [c["slug"] for c in ruled.get("/bi/api/categories").json()] == [other]


def test_users_page_is_for_admins(admin: TestClient, analyst: TestClient) -> None:
    page = admin.get("/bi/users")
    assert page.status_code == 200
    assert ANALYST[0] in page.text and ADMIN[0] in page.text
    denied = analyst.get("/bi/users")
    assert denied.status_code == 403 and "admins" in denied.text
    assert 'href="/bi/users"' not in analyst.get("/bi/").text


def test_freshness_and_docs(admin: TestClient) -> None:
    fresh = admin.get("/bi/api/freshness").json()
    assert fresh["as_of"] is not None and fresh["tables"]
    docs = admin.get("/bi/docs")
    assert docs.status_code == 200 and "/bi/docs/static/swagger-ui-bundle.js" in docs.text
    spec = admin.get("/bi/openapi.json").json()
    assert "/bi/api/dashboards/{dashboard_id}/visuals/{visual_id}" in spec["paths"]
