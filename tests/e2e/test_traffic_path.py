"""The traffic path under `tierlake up`, as a user sees it: DNS names that resolve, instances
killed under load with no failed request, a group that scales out on an alarm and back in,
and a rolling release with no failed request.

Each test starts a whole system (two web and two app instances behind two load balancers)
on free ports, drives it with a bounded steady load, and reads the control plane's API.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
from steady_load import SteadyLoad
from system_proc import System, seed_small_store, start_system, stop_system

pytestmark = pytest.mark.slow
WEB_PAGES = ["/", "/search?q=a", "/cart", "/search?q=e"]
API_PATHS = ["/api/v1/products?limit=5", "/api/v1/products/1", "/api/v1/categories"]


def _fleet(system: System) -> dict[str, Any]:
    r = httpx.get(system.control_url + "/api/fleet", timeout=10)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _group(system: System, name: str) -> dict[str, Any]:
    return next(g for g in _fleet(system)["AutoScalingGroups"]
                if g["AutoScalingGroupName"] == name)


def _in_service(system: System, name: str) -> list[str]:
    return [i["InstanceId"] for i in _group(system, name)["Instances"]
            if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"]


def _healthy_targets(system: System, name: str) -> list[str]:
    tg = next(t for t in _fleet(system)["TargetGroups"] if t["TargetGroupName"] == name)
    return [t["Target"]["Id"] for t in tg["Targets"] if t["TargetHealth"]["State"] == "healthy"]


def _wait(what: str, check: Callable[[], object], system: System, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s:\n{system.output()[-3000:]}")
        time.sleep(0.25)


def _at_capacity(system: System, name: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        return (_group(system, name)["DesiredCapacity"] == n
                and len(_in_service(system, name)) == n
                and len(_healthy_targets(system, name)) == n)
    return check


def _causes(system: System, group: str) -> list[str]:
    return [f"{a['Description']} | {a['Cause']}" for a in _fleet(system)["Activities"]
            if a["AutoScalingGroupName"] == group]


def _kill(system: System, instance_id: str) -> None:
    token = httpx.get(system.control_url + "/api/csrf-token").json()["token"]
    r = httpx.post(f"{system.control_url}/api/instances/{instance_id}/kill",
                   headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text


@pytest.fixture
def system(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[System]:
    seed_small_store(tmp_path / "var")
    env = getattr(request, "param", {})
    s = start_system(tmp_path, seed=False, extra_env=env)
    yield s
    stop_system(s)


def test_the_zone_answers_over_udp_and_tcp(system: System) -> None:
    web_port = int(system.web_url.rsplit(":", 1)[1])
    for query in (dns.query.udp, dns.query.tcp):
        answer = query(dns.message.make_query("shop.tierlake.test", "A"), "127.0.0.1",
                       port=system.dns_port, timeout=5)
        assert [r.to_text() for rrset in answer.answer for r in rrset] == ["127.0.0.1"]
        srv = query(dns.message.make_query("_http._tcp.shop.tierlake.test", "SRV"),
                    "127.0.0.1", port=system.dns_port, timeout=5)
        [record] = [r for rrset in srv.answer for r in rrset]
        assert record.port == web_port
    # The name a shopper uses reaches the store through the internet-facing balancer.
    r = httpx.get(f"http://127.0.0.1:{web_port}/", headers={"Host": "shop.tierlake.test"})
    assert r.status_code == 200 and "tierlake" in r.text.lower()
    # ... and both show in the control plane's Prometheus metrics, with AWS's names.
    def exported() -> bool:
        text = httpx.get(system.control_url + "/metrics", timeout=10).text
        queries = [line for line in text.splitlines()
                   if line.startswith("aws_route53_dns_queries_sum")]
        return bool(queries) and float(queries[0].split()[-1]) >= 4 and \
            'aws_applicationelb_request_count_sum{load_balancer="tierlake-web"' in text
    _wait("the DNS queries and the request in /metrics", exported, system, timeout=30)


def test_killed_instances_cost_no_request_and_are_replaced(system: System) -> None:
    web_before, app_before = _in_service(system, "web"), _in_service(system, "app")
    assert len(web_before) == 2 and len(app_before) == 2
    with SteadyLoad(system.web_url, WEB_PAGES, threads=3, max_seconds=120) as web_load, \
            SteadyLoad(system.app_url, API_PATHS, threads=2, max_seconds=120) as api_load:
        web_load.wait_for_requests(50)
        _kill(system, web_before[0])
        _kill(system, app_before[0])
        _wait("both groups back at two healthy instances",
              lambda: (_at_capacity(system, "web", 2)() and _at_capacity(system, "app", 2)()
                       and web_before[0] not in _in_service(system, "web")
                       and app_before[0] not in _in_service(system, "app")), system)
        sent = web_load.result.requests
        web_load.wait_for_requests(sent + 50)  # and traffic flows over the replacements
    web, api = web_load.result, api_load.result
    assert web.failures == [] and api.failures == [], (web.failures + api.failures)[:10]
    assert web.requests > 100 and api.requests > 50, (web.statuses, api.statuses)
    for group in ("web", "app"):
        causes = _causes(system, group)
        assert any("Terminating EC2 instance" in c and "health check" in c for c in causes), \
            causes


@pytest.mark.parametrize("system", [{
    "TIERLAKE_FLEET__PERIOD_SECONDS": "1", "TIERLAKE_FLEET__TARGET_REQUESTS_PER_TARGET": "10",
    "TIERLAKE_FLEET__INSTANCE_WARMUP_SECONDS": "1", "TIERLAKE_FLEET__APP_MAX": "3",
    "TIERLAKE_FLEET__TARGET_CPU_PERCENT": "100"}], indirect=True)
def test_the_app_group_scales_out_on_its_alarm_and_back_in(system: System) -> None:
    # Well above 10 requests per target per second on two instances: the high alarm fires.
    with SteadyLoad(system.app_url, API_PATHS, threads=4, max_seconds=120) as busy:
        _wait("the app group scaled out", lambda: _group(system, "app")["DesiredCapacity"] == 3,
              system, timeout=60)
        _wait("the third app instance in service", _at_capacity(system, "app", 3), system)
    # A trickle (about 2 requests a second over three instances) keeps requests in flight
    # while the low alarm's fifteen periods pass and the group scales in.
    with SteadyLoad(system.app_url, API_PATHS, threads=1, pause=0.5, max_seconds=120) as calm:
        _wait("the app group scaled back in", _at_capacity(system, "app", 2), system,
              timeout=100)
    assert busy.result.failures == [] and calm.result.failures == [], \
        (busy.result.failures + calm.result.failures)[:10]
    causes = _causes(system, "app")
    assert any("TargetTracking-app-AlarmHigh" in c and "changing the desired capacity from 2 "
               "to 3" in c for c in causes), causes
    assert any("TargetTracking-app-AlarmLow" in c and "from 3 to 2" in c for c in causes), causes


def test_an_instance_refresh_under_load_fails_no_request(system: System) -> None:
    old = set(_in_service(system, "app"))
    with SteadyLoad(system.web_url, WEB_PAGES, threads=2, max_seconds=150) as web_load, \
            SteadyLoad(system.app_url, API_PATHS, threads=2, max_seconds=150) as api_load:
        api_load.wait_for_requests(50)
        result = subprocess.run(
            [sys.executable, "-m", "tierlake", "fleet", "refresh", "app", "--url",
             system.control_url], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

        def refreshed() -> bool:
            refresh = _group(system, "app").get("InstanceRefresh") or {}
            return refresh.get("Status") == "Successful"

        _wait("the instance refresh succeeded", refreshed, system, timeout=120)
        _wait("two healthy app instances", _at_capacity(system, "app", 2), system)
    new = set(_in_service(system, "app"))
    assert not old & new, (old, new)
    web, api = web_load.result, api_load.result
    assert web.failures == [] and api.failures == [], (web.failures + api.failures)[:10]
    assert api.requests > 100, api.statuses
