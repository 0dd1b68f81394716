"""The load goes where the system's DNS says, with the shop's name as Host header, and the
summary shows the fleet the control plane reports.

A real DNS server (UDP on loopback) answers ``shop.tierlake.test`` with an A and an SRV
record pointing at a small HTTP server that records every request's Host header; another
answers ``GET /api/fleet`` as the control plane does (AWS's field names).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dns_answers import dns_server

pytestmark = pytest.mark.timeout(60)
FLEET = json.dumps({"groups": [
    {"AutoScalingGroupName": "web", "Instances": [
        {"InstanceId": "i-1", "LifecycleState": "InService"},
        {"InstanceId": "i-2", "LifecycleState": "InService"}]},
    {"AutoScalingGroupName": "app", "Instances": [
        {"InstanceId": "i-3", "LifecycleState": "InService"},
        {"InstanceId": "i-4", "LifecycleState": "Pending"}]}]}).encode()
PAGE = (b'<html><body><a href="/c/lamps">Lamps</a> <a href="/p/amber-lamp-1">Amber lamp</a>'
        b'</body></html>')


def _serve(body: bytes, content_type: str, seen: list[tuple[str, str]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Host", "")))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_requests_go_to_the_srv_port_with_the_shop_host(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    asked: list[tuple[str, str]] = []
    server = _serve(PAGE, "text/html", seen)
    control = _serve(FLEET, "application/json", asked)
    out = tmp_path / "summary.json"
    try:
        with dns_server() as (dns_port, records):
            records["shop.tierlake.test. A"] = ["127.0.0.1"]
            records["_http._tcp.shop.tierlake.test. SRV"] = [
                f"0 1 {server.server_port} shop.tierlake.test."]
            env = {**os.environ, "TIERLAKE_DNS__PORT": str(dns_port),
                   "TIERLAKE_DNS__ZONE": "tierlake.test", "TIERLAKE_WEB_PORT": "9",
                   "TIERLAKE_FLEET__CONTROL_PORT": str(control.server_port)}
            result = subprocess.run(
                [sys.executable, "-m", "tierlake.cli_load", "--users", "2", "--duration", "2",
                 "--think-scale", "0.01", "--seed", "3", "--json-out", str(out)],
                capture_output=True, text=True, timeout=50, env=env)
    finally:
        for http_server in (server, control):
            http_server.shutdown()
            http_server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["target"] == f"http://127.0.0.1:{server.server_port}"
    assert "SRV" in summary["note"]
    assert seen and {host for _, host in seen} == {"shop.tierlake.test"}
    assert {path for path, _ in seen} >= {"/"}
    # the control plane was asked while the load ran, and the summary keeps what it said
    assert asked and {path for path, _ in asked} == {"/api/fleet"}
    assert summary["instances"] and all(
        s["in_service"] == {"web": 2, "app": 1} for s in summary["instances"])
    timeline = result.stdout.split("Instances in service over time:", 1)[1]
    assert " s web 2 app 1" in timeline.splitlines()[0]
