"""Alerts and scheduled reports: the real engine over a real lake, mail through a real SMTP
catcher on a free port, the alerts file edited the way an operator edits it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from reports_lake import ReportsLake, shared_lake

from servers import free_port
from tierlake.bi.alerts import (
    AlertScheduler,
    AlertsFileError,
    ReportSpec,
    alerts_path,
    describe,
    load_alerts,
    show_number,
    state_path,
)
from tierlake.bi.engine import BiEngine
from tierlake.bi.mail import MailCatcher, list_messages, mail_dir, read_message
from tierlake.bi.model import Principal
from tierlake.bi.notifications import BiNotifications
from tierlake.bi.reports import chromium_available

pytestmark = pytest.mark.timeout(180)
ADMIN = Principal(email="admin@tierlake.test", role="admin")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> ReportsLake:
    return shared_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def engine(lake: ReportsLake) -> BiEngine:
    return BiEngine.from_settings(lake.settings)


@pytest.fixture
def scheduler(lake: ReportsLake, engine: BiEngine, tmp_path: Path) -> Iterator[AlertScheduler]:
    """A scheduler with its own alerts file, state and maildir, and a catcher listening."""
    settings = lake.settings.model_copy(update={
        "data_dir": tmp_path,
        "bi": lake.settings.bi.model_copy(update={"smtp_port": free_port(),
                                                  "alert_check_seconds": 0.2})})
    with MailCatcher("127.0.0.1", settings.bi.smtp_port, mail_dir(settings)):
        yield AlertScheduler(settings, engine)


def _write(s: AlertScheduler, text: str) -> None:
    s.path.write_text(text)


def _revenue_alert(threshold: float, every: str = "0s") -> str:
    return f"""
[[alert]]
name = "revenue-low"
dashboard = "sales"
visual = "revenue"
condition = "below"
threshold = {threshold}
days = 7
to = ["owner@tierlake.test"]
at_most_every = "{every}"
"""


def _subjects(s: AlertScheduler) -> list[str]:
    return [m.subject for m in list_messages(mail_dir(s.settings))]


def _revenue(engine: BiEngine) -> float:
    sales = engine.dashboard("sales")
    base = engine.parse_filters(sales, {})
    week = base.model_copy(update={"start": base.end.fromordinal(base.end.toordinal() - 6)})
    value = engine.run_visual(sales, "revenue", week, ADMIN).value
    assert value and value > 0
    return float(value)


def test_an_alert_mails_once_per_breach(scheduler: AlertScheduler, engine: BiEngine) -> None:
    revenue = _revenue(engine)
    _write(scheduler, _revenue_alert(revenue / 2))  # not breached
    first = scheduler.check_once()
    assert [(a.state, a.fired) for a in first.alerts] == [("OK", False)]
    assert first.alerts[0].value == pytest.approx(revenue)

    _write(scheduler, _revenue_alert(revenue * 2))  # breached: one mail
    assert [a.name for a in scheduler.check_once().fired] == ["revenue-low"]
    assert len(_subjects(scheduler)) == 1
    for _ in range(3):  # still breached: quiet
        again = scheduler.check_once()
        assert again.alerts[0].state == "ALARM" and not again.fired
    assert len(_subjects(scheduler)) == 1

    _write(scheduler, _revenue_alert(revenue / 2))  # recovered: no mail
    assert scheduler.check_once().alerts[0].state == "OK"
    _write(scheduler, _revenue_alert(revenue * 2))  # breached again: a second mail
    assert scheduler.check_once().fired
    subjects = _subjects(scheduler)
    assert len(subjects) == 2 and all(s.startswith('ALARM: "revenue-low"') for s in subjects)
    body = read_message(mail_dir(scheduler.settings), list_messages(
        mail_dir(scheduler.settings))[0].key).html or ""
    assert "below the threshold" in body and "sales" in body


def test_the_state_survives_a_restart(scheduler: AlertScheduler, engine: BiEngine) -> None:
    _write(scheduler, _revenue_alert(_revenue(engine) * 2))
    assert scheduler.check_once().fired
    restarted = AlertScheduler(scheduler.settings, engine)
    assert not restarted.check_once().fired  # it remembers the ALARM: no second mail
    assert len(_subjects(scheduler)) == 1
    state = json.loads(state_path(scheduler.settings).read_text())
    assert state["alerts"]["revenue-low"]["state"] == "ALARM"


def test_at_most_every_keeps_a_flapping_alert_quiet(scheduler: AlertScheduler,
                                                   engine: BiEngine) -> None:
    revenue = _revenue(engine)
    for threshold in (revenue * 2, revenue / 2, revenue * 2):
        _write(scheduler, _revenue_alert(threshold, every="1h"))
        info = scheduler.check_once()
    assert info.alerts[0].state == "ALARM" and info.alerts[0].suppressed
    assert len(_subjects(scheduler)) == 1


def test_a_sql_alert_and_a_broken_one(scheduler: AlertScheduler) -> None:
    _write(scheduler, """
[[alert]]
name = "orders-above"
sql = "SELECT count(*) AS lines FROM sales_lines"
condition = "above"
threshold = 1
to = ["ops@tierlake.test"]

[[alert]]
name = "writes-refused"
sql = "DELETE FROM sales_lines"
condition = "above"
threshold = 1
to = ["ops@tierlake.test"]
""")
    info = scheduler.check_once()
    by_name = {a.name: a for a in info.alerts}
    assert by_name["orders-above"].fired and by_name["orders-above"].value
    broken = by_name["writes-refused"]
    assert broken.state == "INSUFFICIENT_DATA" and not broken.fired and broken.error
    assert any(e.startswith("alert writes-refused:") for e in info.errors)
    lines = int(by_name["orders-above"].value or 0)
    assert _subjects(scheduler) == [f'ALARM: "orders-above": {lines:,} is above 1']


def test_a_scheduled_report_arrives_with_the_report_attached(
        scheduler: AlertScheduler, lake: ReportsLake) -> None:
    _write(scheduler, """
[[report]]
name = "sales-hourly"
dashboard = "sales"
every = "1h"
days = 7
to = ["boss@tierlake.test"]
""")
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()
    assert scheduler.check_once(now=now).reports_sent == ["sales-hourly"]  # first check
    # The file is read at every check: the next mails come without a PDF.
    _write(scheduler, scheduler.path.read_text() + "pdf = false\n")
    assert scheduler.check_once(now=now + 60).reports_sent == []  # not due yet
    assert scheduler.check_once(now=now + 3600).reports_sent == ["sales-hourly"]
    messages = list_messages(mail_dir(scheduler.settings))
    assert len(messages) == 2
    assert messages[0].attachments == (messages[1].attachments[0],)  # HTML only, same name
    view = read_message(mail_dir(scheduler.settings), messages[1].key)
    names = [a.filename for a in view.attachments]
    html = next(a for a in view.attachments if a.filename.endswith(".html")).content.decode()
    assert "<title>Sales report</title>" in html and "plotly.js v" in html
    # Mailed as an analyst sees it (the default role): no customer's e-mail.
    assert not [e for e in lake.emails if e in html]
    if chromium_available():
        pdf = next(a for a in view.attachments if a.filename.endswith(".pdf"))
        assert pdf.content.startswith(b"%PDF") and pdf.mime_type == "application/pdf"
    else:
        assert len(names) == 1 and "no PDF" in (view.html or "")
    overview = describe(scheduler.settings)
    assert overview.reports["sales-hourly"].next_due == now + 7200


def test_the_loop_checks_until_stopped(scheduler: AlertScheduler, engine: BiEngine) -> None:
    _write(scheduler, _revenue_alert(_revenue(engine) * 2))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        deadline = asyncio.get_running_loop().time() + 30
        while not _subjects(scheduler):
            assert asyncio.get_running_loop().time() < deadline, "no alert mail within 30 s"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert len(_subjects(scheduler)) == 1


def test_the_control_plane_component_catches_and_checks(lake: ReportsLake, engine: BiEngine,
                                                        tmp_path: Path) -> None:
    """What `tierlake up`'s control plane runs: the catcher and the checks, then a clean
    stop (the port is free again)."""
    settings = lake.settings.model_copy(update={
        "data_dir": tmp_path, "lake_url": lake.settings.resolved_lake_url,
        "bi": lake.settings.bi.model_copy(update={"smtp_port": free_port(),
                                                  "alert_check_seconds": 0.2})})
    alerts_path(settings).write_text(_revenue_alert(_revenue(engine) * 2))

    async def main() -> None:
        component = BiNotifications(settings)  # its own engine, from the settings
        await component.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not list_messages(mail_dir(settings)):
                assert asyncio.get_running_loop().time() < deadline, "no mail within 30 s"
                await asyncio.sleep(0.1)
        finally:
            await component.stop()

    asyncio.run(main())
    assert [m.to for m in list_messages(mail_dir(settings))] == [("owner@tierlake.test",)]
    with MailCatcher("127.0.0.1", settings.bi.smtp_port, tmp_path / "again"):
        pass  # the component let go of the port


def test_a_bad_file_names_the_entry_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bi-alerts.toml"
    path.write_text('[[alert]]\nname = "x"\ndashboard = "sales"\nvisual = "revenue"\n'
                    'condition = "under"\nthreshold = 1\nto = ["a@b.test"]\n')
    with pytest.raises(AlertsFileError) as caught:
        load_alerts(path)
    assert str(path) in str(caught.value) and "alert.0.condition" in str(caught.value)
    path.write_text('[[report]]\nname = "r"\ndashboard = "sales"\nto = ["a@b.test"]\n')
    with pytest.raises(AlertsFileError, match="give either `every`"):
        load_alerts(path)
    path.write_text('[[report]]\nname = "r"\ndashboard = "sales"\nat = "7am"\nto = ["a@b.test"]\n')
    with pytest.raises(AlertsFileError, match="HH:MM"):
        load_alerts(path)
    assert load_alerts(tmp_path / "absent.toml").alert == ()


def test_the_example_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "bi-alerts.example.toml"
    declared = load_alerts(example)
    assert declared.alert and declared.report


def test_a_daily_report_is_due_at_its_utc_time() -> None:
    spec = ReportSpec(name="r", dashboard="sales", at="07:00", to=("a@b.test",))
    before = datetime(2026, 12, 1, 6, 59, tzinfo=UTC).timestamp()
    after = datetime(2026, 12, 1, 7, 0, tzinfo=UTC).timestamp()
    assert spec.next_after(before, first=True) == after
    assert spec.next_after(after) == datetime(2026, 12, 2, 7, 0, tzinfo=UTC).timestamp()


def test_numbers_in_mails_read_as_written() -> None:
    assert [show_number(v) for v in (50000.0, 1958.333, 0.0213, 0.1866, 0.0, -2.5)] == [
        "50,000", "1,958.33", "0.0213", "0.1866", "0", "-2.5"]


def test_the_alerts_file_defaults_under_data_dir(lake: ReportsLake) -> None:
    assert alerts_path(lake.settings) == lake.settings.data_dir / "bi-alerts.toml"
