"""`tierlake load` as a user meets it before any load: refusals, bounds, the entry point.

The command runs as ``python -m tierlake.cli_load`` (the same function `tierlake load`
registers). The DNS tests answer from a real UDP socket on loopback with dnspython's wire
format, the way the system's DNS server does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from load.dns_answers import dns_server
from tierlake.load.entry import LoadTargetError, check_target, resolve_entry_point


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierlake.cli_load", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "https://example.com",
                                 "http://shop.tierlake.test:8000"])
def test_a_remote_target_is_refused_in_one_line(url: str) -> None:
    result = _run("--host", url, "--users", "1", "--duration", "1")
    assert result.returncode == 1
    assert "is not a loopback address" in result.stderr and "--allow-remote" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "expected"), [
    (["--users", "1001"], "--users"), (["--duration", "3601"], "--duration"),
    (["--users", "0"], "--users"), (["--host", "ftp://127.0.0.1/"], "not an http"),
])
def test_out_of_bounds_arguments_are_refused(args: list[str], expected: str) -> None:
    result = _run(*args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_loopback_targets_pass_and_remote_ones_need_the_flag() -> None:
    for url in ("http://127.0.0.1:8000", "http://127.0.0.2:80", "http://localhost:1",
                "http://[::1]:8000"):
        check_target(url, allow_remote=False)
    with pytest.raises(LoadTargetError, match="--allow-remote"):
        check_target("http://192.168.1.10", allow_remote=False)
    check_target("http://192.168.1.10", allow_remote=True)


@pytest.fixture
def dns() -> Iterator[tuple[int, dict[str, list[str]]]]:
    with dns_server() as server:
        yield server


def test_the_shop_is_found_by_its_a_and_srv_records(
        dns: tuple[int, dict[str, list[str]]]) -> None:
    port, records = dns
    records["shop.tierlake.test. A"] = ["127.0.0.2"]
    records["_http._tcp.shop.tierlake.test. SRV"] = ["0 10 18080 shop.tierlake.test."]
    entry = resolve_entry_point("tierlake.test", port, fallback_host="127.0.0.1",
                                fallback_port=8000)
    assert entry.url == "http://127.0.0.2:18080"
    assert entry.host_header == "shop.tierlake.test"
    assert "SRV" in entry.note


def test_without_srv_the_web_port_is_used(dns: tuple[int, dict[str, list[str]]]) -> None:
    port, records = dns
    records["shop.tierlake.test. A"] = ["127.0.0.3"]
    entry = resolve_entry_point("tierlake.test", port, fallback_host="127.0.0.1",
                                fallback_port=8123)
    assert (entry.url, entry.host_header) == ("http://127.0.0.3:8123", "shop.tierlake.test")


def test_without_a_dns_server_the_web_tier_is_used_with_a_note() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        silent = s.getsockname()[1]  # bound and never read: queries go unanswered
        entry = resolve_entry_point("tierlake.test", silent, fallback_host="127.0.0.1",
                                    fallback_port=8000)
    assert entry.url == "http://127.0.0.1:8000" and entry.host_header == ""
    assert "no answer for shop.tierlake.test" in entry.note
