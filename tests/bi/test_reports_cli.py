"""`tierlake bi report`, `tierlake bi alerts check|list` and `tierlake mail serve|list`,
as the lead mounts them (``bi_app.add_typer(bi_reports_app)``, ``mail`` group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from reports_lake import ReportsLake, shared_lake
from typer.testing import CliRunner

from servers import free_port
from tierlake.bi.mail import list_messages, mail_dir, send
from tierlake.cli_bi_reports import bi_reports_app, mail_app
from tierlake.config import reset_settings_cache
from tierlake.errors import TierlakeError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> ReportsLake:
    return shared_lake(tmp_path_factory)


@pytest.fixture
def cli(lake: ReportsLake, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    s = lake.settings
    for key, value in {"TIERLAKE_DATA_DIR": str(s.data_dir),
                       "TIERLAKE_ADMIN_EMAIL": s.admin_email,
                       "TIERLAKE_BI__SMTP_PORT": str(s.bi.smtp_port),
                       "TIERLAKE_BI__DASHBOARDS_DIR": str(s.bi.dashboards_dir)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TIERLAKE_CONFIG", str(s.data_dir / "absent.toml"))
    reset_settings_cache()
    root = typer.Typer()
    bi = typer.Typer()
    bi.add_typer(bi_reports_app)
    root.add_typer(bi, name="bi")
    root.add_typer(mail_app, name="mail")
    yield root
    reset_settings_cache()


def test_report_writes_html_for_the_range_asked(cli: typer.Typer, tmp_path: Path,
                                                lake: ReportsLake) -> None:
    out = tmp_path / "sales.html"
    result = CliRunner().invoke(cli, ["bi", "report", "sales", "--out", str(out), "--start",
                                      "2026-11-01", "--end", "2026-11-07"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<title>Sales report</title>" in html and "2026-11-07" in html
    analyst = tmp_path / "buyers.html"
    result = CliRunner().invoke(cli, ["bi", "report", "buyers", "--out", str(analyst),
                                      "--role", "analyst"])
    assert result.exit_code == 0, result.output
    assert not [e for e in lake.emails if e in analyst.read_text()]


def test_report_mistakes_are_one_line_errors(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bi", "report", "nope", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, TierlakeError)
    assert "no dashboard 'nope'; known:" in str(result.exception)
    result = CliRunner().invoke(cli, ["bi", "report", "sales", "--out", str(tmp_path / "x"),
                                      "--start", "2026-11-09", "--end", "2026-11-01"])
    assert isinstance(result.exception, TierlakeError)
    assert "after the end date" in str(result.exception)


def test_alerts_check_prints_what_fired(cli: typer.Typer, lake: ReportsLake) -> None:
    from tierlake.bi.mail import MailCatcher

    path = lake.settings.data_dir / "bi-alerts.toml"
    path.write_text('[[alert]]\nname = "lines"\nsql = "SELECT count(*) FROM sales_lines"\n'
                    'condition = "above"\nthreshold = 1\nto = ["ops@tierlake.test"]\n')
    try:
        with MailCatcher("127.0.0.1", lake.settings.bi.smtp_port, mail_dir(lake.settings)):
            result = CliRunner().invoke(cli, ["bi", "alerts", "check"])
        assert result.exit_code == 0, result.output
        assert "lines" in result.output and "ALARM" in result.output and "sent" in result.output
        listed = CliRunner().invoke(cli, ["bi", "alerts", "list"])
        assert "lines" in listed.output and "ALARM" in listed.output
    finally:
        path.unlink()


def test_mail_serve_catches_until_interrupted(tmp_path: Path, lake: ReportsLake) -> None:
    port = free_port()
    env = {**os.environ, "TIERLAKE_DATA_DIR": str(tmp_path), "TIERLAKE_BI__SMTP_PORT": str(port),
           "TIERLAKE_CONFIG": str(tmp_path / "absent.toml"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "from tierlake.cli_bi_reports import mail_app; mail_app(prog_name='tierlake mail')"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        settings = lake.settings.model_copy(update={
            "data_dir": tmp_path, "bi": lake.settings.bi.model_copy(update={"smtp_port": port})})
        deadline = time.monotonic() + 30
        while True:
            try:
                send(settings, ["x@tierlake.test"], "Caught", "<p>caught</p>")
                break
            except TierlakeError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the catcher did not listen within 30 s"
                time.sleep(0.2)
        assert [m.subject for m in list_messages(mail_dir(settings))] == ["Caught"]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert f"Mail catcher on 127.0.0.1:{port}" in output
