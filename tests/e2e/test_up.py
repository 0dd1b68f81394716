"""`tierlake up`: the system a user starts, uses and stops (killing and breaking it:
test_control_plane.py)."""

from __future__ import annotations

import httpx
from system_proc import alive, descendants, stop_system


def test_up_serves_the_store_and_stops_cleanly(seeded_system) -> None:
    s = seeded_system
    home = httpx.get(s.web_url + "/")
    assert home.status_code == 200
    assert "text/html" in home.headers["content-type"]
    products = httpx.get(s.app_url + "/api/v1/products").json()
    assert products["total"] >= 200, "the demo store is seeded on first start"
    assert s.web_url in s.output() and "Ctrl-C" in s.output()
    tiers = descendants(s.proc.pid)
    assert sorted(cmd.split(" serve ")[1].split()[0] for cmd in tiers.values()) == \
        ["app", "app", "bi", "web", "web"], \
        "two web, two app and one BI instance, each its own process"
    assert stop_system(s) == 0
    assert "tierlake stopped" in s.output()
    assert not [pid for pid in tiers if alive(pid)], "no orphan process after Ctrl-C"
