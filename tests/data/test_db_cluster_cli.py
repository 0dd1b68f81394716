"""`tierlake db cluster up / status / failover` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import servers

pytestmark = pytest.mark.timeout(180)
MODULE = "tierlake.cli_db_cluster"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def test_db_cluster_status_without_a_cluster_is_one_line(tmp_path: Path) -> None:
    result = _run("status", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no database cluster is running here" in result.stderr
    assert "tierlake db cluster up" in result.stderr and "Traceback" not in result.stderr


def test_db_cluster_up_status_failover_and_stop() -> None:
    servers.require_binary(shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin:"
                                        + os.environ.get("PATH", "")),
                           "MariaDB server (mariadbd)", "mariadb-server")
    directory = servers.scratch_dir("db-cluster-cli")
    log = (directory / "up.log").open("w+")
    up = subprocess.Popen(
        [sys.executable, "-m", MODULE, "up", "--data-dir", str(directory), "--writer-port",
         str(servers.free_port()), "--reader-port", str(servers.free_port())],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        status = _run("status", "--data-dir", str(directory), "--json")
        while status.returncode != 0 and time.monotonic() < deadline and up.poll() is None:
            time.sleep(0.2)
            status = _run("status", "--data-dir", str(directory), "--json")
        assert status.returncode == 0, (directory / "up.log").read_text()
        before = json.loads(status.stdout)
        assert [m["Role"] for m in before["DBClusterMembers"]] == ["primary", "standby"]
        assert before["Primary"] == "db-a"

        switched = _run("failover", "--data-dir", str(directory))
        assert switched.returncode == 0, switched.stderr
        assert "db-b is the primary now" in switched.stdout

        table = _run("status", "--data-dir", str(directory))
        assert table.returncode == 0, table.stderr
        assert "The user requested a failover of the DB instance." in table.stdout
        assert "Multi-AZ instance failover completed." in table.stdout
        pids = [m["Pid"] for m in before["DBClusterMembers"]]
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        finally:
            if up.poll() is None:
                up.kill()
            log.close()
    assert up.returncode == 0, (directory / "up.log").read_text()
    for pid in pids:  # the servers stopped with it
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text()
    shutil.rmtree(directory, ignore_errors=True)
