"""What `tierlake load` reports when the store does not answer, and how it groups failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers import free_port
from tierlake.load.stats import failure_kind, in_service_counts

pytestmark = pytest.mark.timeout(60)


def test_a_store_that_is_down_shows_as_refused_connections_in_the_summary(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "tierlake.cli_load", "--host", f"http://127.0.0.1:{port}",
         "--users", "2", "--duration", "2", "--think-scale", "0.01", "--seed", "5",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=50, env=dict(os.environ))
    summary = json.loads(out.read_text())
    assert summary["requests"] > 0
    assert summary["failures"] == summary["requests"]
    assert set(summary["failures_by_kind"]) == {"connection refused"}, summary
    assert sum(summary["failures_by_kind"].values()) == summary["failures"]
    assert result.returncode == 0, result.stderr  # the load ran; the summary tells the rest
    assert "connection refused" in result.stdout


@pytest.mark.parametrize(("message", "kind"), [
    ("HTTP 502", "HTTP 502"),
    ("503 Server Error: Service Unavailable for url: http://127.0.0.1:1/", "HTTP 503"),
    ("no answer: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
     "/ (Caused by NewConnectionError(\"Failed to establish a new connection: [Errno 111] "
     "Connection refused\"))", "connection refused"),
    ("no answer: ('Connection aborted.', RemoteDisconnected('Remote end closed connection "
     "without response'))", "connection closed"),
    ("no answer: HTTPConnectionPool(host='127.0.0.1', port=1): Read timed out.", "timeout"),
    ("the page has no CSRF token", "the page has no CSRF token"),
])
def test_failures_are_grouped_by_kind(message: str, kind: str) -> None:
    assert failure_kind(message) == kind


def test_instances_in_service_are_counted_per_group() -> None:
    status = {"groups": [
        {"AutoScalingGroupName": "web", "Instances": [
            {"InstanceId": "i-1", "LifecycleState": "InService"},
            {"InstanceId": "i-2", "LifecycleState": "Pending"}]},
        {"name": "app", "instances": [{"lifecycle_state": "InService"},
                                      {"lifecycle_state": "InService"}]}]}
    assert in_service_counts(status) == {"web": 1, "app": 2}
    assert in_service_counts(["not", "a", "status"]) == {}
