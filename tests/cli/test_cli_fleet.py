"""`tierlake fleet` as an operator types it, against the control app served by uvicorn on a
free port (behind it a small real ControlPlane), and with nothing listening at all."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import typer.main
from typer.testing import CliRunner

from fleet.control_fake import FakeControlPlane, serving
from servers import free_port
from tierlake.cli_fleet import fleet_app
from tierlake.config import reset_settings_cache
from tierlake.fleet.api import create_control_app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()
WIDE = {"COLUMNS": "220"}  # rich wraps tables to the terminal; the checks read whole ids


@pytest.fixture
def plane() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
def url(plane: FakeControlPlane) -> Iterator[str]:
    with serving(create_control_app(plane)) as served:
        yield served


def _fleet(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(fleet_app, list(args), env=WIDE)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["status", "scale", "kill", "refresh"])
def test_every_fleet_command_has_help(command: str) -> None:
    assert command in typer.main.get_command(fleet_app).commands  # type: ignore[attr-defined]
    code, out, _ = _fleet(command, "--help")
    assert code == 0 and "Usage:" in out and "--url" in out


def test_status_prints_groups_targets_alarms_and_activities(
        url: str, plane: FakeControlPlane) -> None:
    assert _fleet("scale", "app", "3", "--url", url)[0] == 0
    code, out, err = _fleet("status", "--url", url)
    assert code == 0, err
    assert "web: min 2, desired 2, max 4 (health check ELB)" in out
    assert "app: min 2, desired 3, max 4" in out
    for group in plane.groups.values():
        for instance in group.instances:
            assert instance.id in out
            assert str(instance.port) in out
    for words in ("InService", "Pending", "Healthy", "2m05s", "Target groups", "healthy",
                  "Elb.InitialHealthChecking", "TargetTracking-app-AlarmHigh-1b2c",
                  "Launching a new EC2 instance", "shop.tierlake.test"):
        assert words in out, words


def test_status_json_is_the_apis_json(url: str) -> None:
    code, out, _ = _fleet("status", "--json", "--url", url)
    assert code == 0
    assert json.loads(out) == httpx.get(f"{url}/api/fleet").json()


def test_scale_kill_and_refresh_say_what_happened(url: str, plane: FakeControlPlane) -> None:
    code, out, _ = _fleet("scale", "web", "4", "--url", url)
    assert code == 0
    assert "Desired capacity of web: 2 -> 4. 2 instance(s) launching." in out
    assert plane.groups["web"].desired == 4 and len(plane.groups["web"].instances) == 4

    victim = plane.groups["app"].instances[0]
    code, out, _ = _fleet("kill", victim.id, "--url", url)
    assert code == 0 and f"Sent SIGKILL to {victim.id} (pid {victim.pid})" in out
    assert victim not in plane.groups["app"].instances

    code, out, _ = _fleet("refresh", "app", "--min-healthy-percentage", "50", "--url", url)
    assert code == 0 and "refresh-app-1" in out
    refresh = plane.groups["app"].refresh
    assert refresh is not None and refresh.min_healthy_percentage == 50


@pytest.mark.parametrize(("args", "line"), [
    (("scale", "web", "9"),
     "error: New SetDesiredCapacity value 9 is above max value 4 for the AutoScalingGroup."),
    (("scale", "db", "2"),
     "error: AutoScalingGroup name not found - no group named 'db'; known groups: app, web."),
    (("kill", "i-nothere"), "error: Instance Id not found - no instance 'i-nothere'"),
])
def test_refusals_are_one_line_and_exit_1(url: str, args: tuple[str, ...], line: str) -> None:
    code, out, err = _fleet(*args, "--url", url)
    assert code == 1
    assert err.startswith(line)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


def test_a_second_refresh_is_refused(url: str) -> None:
    assert _fleet("refresh", "web", "--url", url)[0] == 0
    code, _, err = _fleet("refresh", "web", "--url", url)
    assert code == 1 and "already in progress" in err


def test_no_control_plane_is_one_line_naming_tierlake_up(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    for args in (("status",), ("status", "--json"), ("scale", "web", "3"), ("kill", "i-1"),
                 ("refresh", "app")):
        code, out, err = _fleet(*args, "--url", f"http://127.0.0.1:{port}")
        assert code == 1
        assert err.strip() == (f"error: no control plane at http://127.0.0.1:{port}: start it "
                               "with `tierlake up`")
        assert out == ""
    # without --url, the address comes from the settings (host and fleet.control_port)
    monkeypatch.setenv("TIERLAKE_FLEET__CONTROL_PORT", str(port))
    reset_settings_cache()
    try:
        code, _, err = _fleet("status")
    finally:
        monkeypatch.delenv("TIERLAKE_FLEET__CONTROL_PORT")
        reset_settings_cache()
    assert code == 1
    assert f"no control plane at http://127.0.0.1:{port}" in err


def test_something_else_at_the_url_is_named(plane: FakeControlPlane) -> None:
    with serving(create_control_app(plane)) as url:
        code, _, err = _fleet("status", "--url", f"{url}/elsewhere")
    assert code == 1
    assert "No such endpoint" in err or "is it tierlake's control plane" in err
