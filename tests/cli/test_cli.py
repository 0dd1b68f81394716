"""The `tierlake` command and its configuration, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from tierlake.cli import app
from tierlake.config import Settings, setting_names, settings_reference

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _commands(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    found = [prefix]
    for name, cmd in group.commands.items():
        if getattr(cmd, "commands", None):  # a group (typer vendors its own click)
            found += _commands(cmd, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tierlake")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.strip().splitlines()) > 3


def test_the_commands_a_user_needs_exist() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"up", "serve", "seed", "db migrate", "db status", "config show", "load",
            "fleet status", "fleet scale", "fleet kill", "fleet refresh", "db cluster up",
            "db cluster status", "db cluster failover", "db failover"} <= names


def test_configuration_reference_is_current() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == settings_reference(), "run: tierlake config docs > docs/configuration.md"
    for variable, key in setting_names().items():  # every key of every section
        assert f"`{variable}` | `{key}`" in documented


def test_environment_beats_file_beats_default(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "tierlake.toml"
    toml.write_text('web_port = 9100\napp_port = 9101\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("TIERLAKE_CONFIG", str(toml))
    monkeypatch.setenv("TIERLAKE_APP_PORT", "9201")
    s = Settings()
    assert (s.web_port, s.app_port, s.log_level, s.host) == (9100, 9201, "DEBUG", "127.0.0.1")
    assert s.resolved_app_url == "http://127.0.0.1:9201"


def test_sections_nest_in_the_file_and_the_environment(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "tierlake.toml"
    toml.write_text("[extract]\ncompact_ratio = 0.5\nexclude = ['a', 'b.c']\n"
                    "[pipeline]\ninterval_seconds = 60\n")
    monkeypatch.setenv("TIERLAKE_CONFIG", str(toml))
    monkeypatch.setenv("TIERLAKE_PIPELINE__INTERVAL_SECONDS", "30")
    s = Settings()
    assert (s.extract.compact_ratio, s.extract.exclude, s.pipeline.interval_seconds) == (
        0.5, ["a", "b.c"], 30)
    assert s.extract.lookback_seconds == 300  # the section's other defaults stay
    toml.write_text("[extract]\ncompact_ration = 0.5\n")
    with pytest.raises(ValueError, match="compact_ration"):
        Settings()


def test_a_variable_that_names_no_setting_is_reported_with_the_likely_one() -> None:
    result = _run("config", "show", env={"TIERLAKE_EXTRACT_COMPACT_RATIO": "0.5"})
    assert result.returncode == 0
    assert ("TIERLAKE_EXTRACT_COMPACT_RATIO is not a setting (did you mean "
            "TIERLAKE_EXTRACT__COMPACT_RATIO?)") in result.stderr
    assert '"compact_ratio": 0.1' in result.stdout  # and it had no effect


def test_unknown_key_in_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "tierlake.toml"
    toml.write_text("web_prot = 1\n")
    monkeypatch.setenv("TIERLAKE_CONFIG", str(toml))
    with pytest.raises(ValueError, match="web_prot"):
        Settings()


def test_production_refuses_development_secrets(monkeypatch) -> None:
    monkeypatch.setenv("TIERLAKE_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="TIERLAKE_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("TIERLAKE_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("TIERLAKE_ADMIN_PASSWORD", "a-real-one")
    assert Settings().environment == "production"


def test_secrets_are_masked(monkeypatch) -> None:
    monkeypatch.setenv("TIERLAKE_DATABASE_URL", "mysql+pymysql://app:hunter2@db.internal/store")
    shown = Settings().public_dict()
    assert "hunter2" not in repr(shown) and "hunter2" not in repr(Settings())
    assert shown["database_url"] == "mysql+pymysql://app:***@db.internal/store"


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierlake", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


@pytest.mark.parametrize(("url", "expected"), [
    ("nonsense", "not a database URL"),
    ("oracle://u:p@h/db", "not supported"),
    ("mysql+pymysql://u:secret-pw@127.0.0.1:1/db", "cannot reach the database"),
])
def test_bad_database_url_is_one_line_naming_the_fix(url: str, expected: str) -> None:
    result = _run("db", "status", env={"TIERLAKE_DATABASE_URL": url})
    assert result.returncode == 1
    assert expected in result.stderr
    assert "TIERLAKE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "secret-pw" not in result.stderr + result.stdout


def test_bad_setting_names_the_variable() -> None:
    result = _run("config", "show", env={"TIERLAKE_WEB_PORT": "eighty"})
    assert result.returncode == 1
    assert "TIERLAKE_WEB_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_migrate_then_status(tmp_path: Path) -> None:
    env = {"TIERLAKE_DATA_DIR": str(tmp_path)}
    assert _run("db", "migrate", env=env).returncode == 0
    status = _run("db", "status", env=env)
    assert status.returncode == 0
    assert "up to date" in status.stdout
    assert (tmp_path / "tierlake.db").exists()


def test_serve_offers_the_tiers_of_the_registry() -> None:
    from tierlake.fleet.tiers import TIERS

    shown = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    for name in TIERS:
        assert f"{name}:" in shown
    result = _run("serve", "bi-next-year", env={})
    assert result.returncode == 2
    assert "'bi-next-year' is not a tier; choose one of: app, web" in result.stderr
    assert "Traceback" not in result.stderr
