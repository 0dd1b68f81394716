"""The control plane's HTTP face as an operator and a script meet it: the JSON API with AWS's
field names and errors, the CSRF guard, the Prometheus text, the page.

The plane behind it is :class:`FakeControlPlane` (a small real implementation of the
protocol); the supervisor's end-to-end tests cover the real one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from fleet.control_fake import FakeControlPlane, serving
from tierlake.edge.lb.model import PROFILES
from tierlake.errors import ConfigError, TierlakeError
from tierlake.fleet.api import ControlServer, create_control_app
from tierlake.fleet.view import AlarmView, DnsRecordView, GroupView, TargetGroupView
from tierlake.ops.prometheus import family_name, snake_case

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def plane() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
def client(plane: FakeControlPlane) -> TestClient:
    return TestClient(create_control_app(plane), base_url="http://127.0.0.1")


@pytest.fixture
def token(client: TestClient) -> dict[str, str]:
    answer = client.get("/api/csrf-token")
    assert answer.headers["cache-control"] == "no-store"
    return {"X-CSRF-Token": answer.json()["token"]}


def _group(client: TestClient, name: str) -> dict:
    groups = client.get("/api/fleet").json()["AutoScalingGroups"]
    return next(g for g in groups if g["AutoScalingGroupName"] == name)


def test_status_speaks_aws_field_names(client: TestClient) -> None:
    status = client.get("/api/fleet")
    assert status.status_code == 200
    body = status.json()
    web = body["AutoScalingGroups"][0]
    assert (web["AutoScalingGroupName"], web["MinSize"], web["MaxSize"],
            web["DesiredCapacity"]) == ("web", 2, 4, 2)
    instance = web["Instances"][0]
    assert instance["InstanceId"].startswith("i-")
    assert (instance["LifecycleState"], instance["HealthStatus"]) == ("InService", "Healthy")
    assert {"Port", "Pid", "AgeSeconds", "ProtectedFromScaleIn"} <= instance.keys()
    target = body["TargetGroups"][0]["Targets"][0]
    assert target["Target"] == {"Id": instance["InstanceId"], "Port": instance["Port"]}
    assert target["TargetHealth"]["State"] == "healthy"
    assert body["LoadBalancers"][0]["DNSName"] == "shop.tierlake.test"
    assert body["Alarms"][0]["StateValue"] == "OK"
    assert body["Dns"]["Records"][0]["TTL"] == 5


def test_scaling_changes_the_group_and_records_an_activity(
        client: TestClient, token: dict[str, str]) -> None:
    answer = client.post("/api/groups/app/desired-capacity", json={"desired_capacity": 3},
                         headers=token)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["PreviousDesiredCapacity"], answer.json()["DesiredCapacity"]) == (2, 3)
    app = _group(client, "app")
    assert app["DesiredCapacity"] == 3
    assert [i["LifecycleState"] for i in app["Instances"]] == ["InService", "InService",
                                                               "Pending"]
    newest = client.get("/api/fleet").json()["Activities"][0]
    launched = app["Instances"][2]["InstanceId"]
    assert newest["Description"] == f"Launching a new EC2 instance: {launched}"
    # AWS's own parameter name is accepted too
    again = client.post("/api/groups/app/desired-capacity", json={"DesiredCapacity": 2},
                        headers=token)
    assert again.status_code == 200 and _group(client, "app")["DesiredCapacity"] == 2


@pytest.mark.parametrize(("desired", "words"), [
    (9, "New SetDesiredCapacity value 9 is above max value 4 for the AutoScalingGroup."),
    (1, "New SetDesiredCapacity value 1 is below min value 2 for the AutoScalingGroup."),
])
def test_desired_capacity_outside_min_max_is_refused_in_aws_words(
        client: TestClient, token: dict[str, str], desired: int, words: str) -> None:
    answer = client.post("/api/groups/web/desired-capacity", json={"desired_capacity": desired},
                         headers=token)
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "ValidationError", "message": words, "fields": []}
    assert _group(client, "web")["DesiredCapacity"] == 2


@pytest.mark.parametrize("body", [{"desired_capacity": -1}, {"desired_capacity": "three"}, {},
                                  {"desired_capacity": 3, "extra": 1}])
def test_malformed_bodies_name_the_field(client: TestClient, token: dict[str, str],
                                         body: dict) -> None:
    answer = client.post("/api/groups/web/desired-capacity", json=body, headers=token)
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"], answer.text


def test_unknown_names_are_404_listing_the_known_ones(
        client: TestClient, token: dict[str, str]) -> None:
    for path in ("/api/groups/nope/desired-capacity", "/api/groups/nope/instance-refresh"):
        answer = client.post(path, json={"desired_capacity": 3} if "capacity" in path else {},
                             headers=token)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == (
            "AutoScalingGroup name not found - no group named 'nope'; known groups: app, web.")
    answer = client.post("/api/instances/i-0123/kill", headers=token)
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert "no instance 'i-0123'" in message
    for instance in _group(client, "web")["Instances"]:
        assert instance["InstanceId"] in message


def test_kill_takes_the_instance_out_and_the_group_replaces_it(
        client: TestClient, token: dict[str, str]) -> None:
    victim = _group(client, "web")["Instances"][0]
    answer = client.post(f"/api/instances/{victim['InstanceId']}/kill", headers=token)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["Pid"], answer.json()["AutoScalingGroupName"]) == (victim["Pid"], "web")
    after = _group(client, "web")["Instances"]
    assert victim["InstanceId"] not in {i["InstanceId"] for i in after}
    assert len(after) == 2 and after[-1]["LifecycleState"] == "Pending"
    assert "EC2 health check" in client.get("/api/fleet").json()["Activities"][0]["Cause"]


def test_instance_refresh_defaults_to_90_percent_and_refuses_a_second(
        client: TestClient, token: dict[str, str]) -> None:
    first = client.post("/api/groups/app/instance-refresh", headers=token)
    assert first.status_code == 200, first.text
    assert first.json()["MinHealthyPercentage"] == 90
    assert _group(client, "app")["InstanceRefresh"]["Status"] == "Pending"
    second = client.post("/api/groups/app/instance-refresh",
                         json={"min_healthy_percentage": 50}, headers=token)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "InstanceRefreshInProgress"
    too_high = client.post("/api/groups/web/instance-refresh",
                           json={"min_healthy_percentage": 101}, headers=token)
    assert too_high.status_code == 422
    assert too_high.json()["error"]["fields"][0]["field"] == "body.min_healthy_percentage"


def test_actions_need_the_token_and_refuse_other_sites(
        client: TestClient, token: dict[str, str]) -> None:
    attempts = [{}, {"X-CSRF-Token": "guessed"},
                {**token, "Sec-Fetch-Site": "cross-site"}]
    for headers in attempts:
        for path in ("/api/groups/web/desired-capacity", "/api/instances/i-1/kill",
                     "/api/groups/web/instance-refresh"):
            answer = client.post(path, json={"desired_capacity": 3}, headers=headers)
            assert answer.status_code == 403, (path, headers)
            assert answer.json()["error"]["code"] in ("csrf_token_invalid", "cross_site")
    assert _group(client, "web")["DesiredCapacity"] == 2
    page = client.get("/")
    assert f'<meta name="csrf-token" content="{token["X-CSRF-Token"]}">' in page.text


def test_a_foreign_host_header_is_refused(plane: FakeControlPlane) -> None:
    rebound = TestClient(create_control_app(plane), base_url="http://shop.attacker.example")
    assert rebound.get("/api/fleet").status_code == 400
    assert rebound.get("/api/csrf-token").status_code == 400


class _AwsRefusal(TierlakeError):
    code = "ScalingActivityInProgress"


def test_control_plane_failures_are_json_never_a_traceback(
        plane: FakeControlPlane, client: TestClient, token: dict[str, str]) -> None:
    plane.failure = RuntimeError("disk on fire")
    answer = client.post("/api/groups/web/desired-capacity", json={"desired_capacity": 3},
                         headers=token)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "control_plane_failed"
    assert "disk on fire" in answer.json()["error"]["message"]
    assert "Traceback" not in answer.text
    plane.failure = TierlakeError("the launch template's command is missing")
    answer = client.post("/api/groups/web/instance-refresh", headers=token)
    assert answer.status_code == 409
    assert "launch template" in answer.json()["error"]["message"]
    assert answer.json()["error"]["code"] == "conflict"
    plane.failure = _AwsRefusal("Scaling activity 1 is in progress and blocks this action.")
    answer = client.post("/api/groups/web/desired-capacity", json={"desired_capacity": 3},
                         headers=token)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "ScalingActivityInProgress"
    plane.failure = RuntimeError("store gone")
    assert client.get("/metrics").status_code == 500
    assert client.get("/api/fleet").status_code == 200  # one failure, not a broken app


def test_openapi_and_docs_describe_the_api(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert {"/api/fleet", "/api/groups/{name}/desired-capacity",
            "/api/instances/{instance_id}/kill", "/api/groups/{name}/instance-refresh",
            "/metrics", "/api/csrf-token"} <= spec["paths"].keys()
    schemas = spec["components"]["schemas"]
    assert "DesiredCapacity" in schemas["GroupView"]["properties"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert client.get("/health").json() == {"status": "ok"}


def test_metrics_are_prometheus_text_with_cloudwatch_names(client: TestClient) -> None:
    first = client.get("/metrics")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(first.text)}
    requests = families["aws_applicationelb_request_count"]
    assert requests.type == "summary"
    per_group = {s.name: s.value for s in requests.samples
                 if s.labels == {"load_balancer": "web", "target_group": "web"}}
    assert per_group == {"aws_applicationelb_request_count_sum": 10.0,
                         "aws_applicationelb_request_count_count": 1.0}
    assert families["aws_ec2_cpu_utilization_last"].samples[0].value == 12.5
    # a series without a datapoint yet has no _last sample, but its family is declared
    assert families["aws_applicationelb_http_code_target_5xx_count_last"].samples == []
    second = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    grown = [s.value for s in second["aws_applicationelb_request_count"].samples
             if s.name.endswith("_sum") and s.labels.get("target_group") == "web"]
    assert grown == [20.0]

    targets = families["tierlake_target_state"].samples
    by_target: dict[str, float] = {}
    for sample in targets:
        by_target[sample.labels["target_id"]] = (by_target.get(sample.labels["target_id"], 0)
                                                 + sample.value)
    assert len(by_target) == 4 and set(by_target.values()) == {1.0}
    alarm = {s.labels["state"]: s.value for s in families["tierlake_alarm_state"].samples}
    assert alarm == {"OK": 1.0, "ALARM": 0.0, "INSUFFICIENT_DATA": 0.0}
    in_service = [s for s in families["tierlake_instance_state"].samples
                  if s.labels["state"] == "InService" and s.value == 1.0]
    assert len(in_service) == 4
    healthy = {s.labels["instance_id"]: s.labels["state"]
               for s in families["tierlake_instance_health_status"].samples if s.value == 1.0}
    assert len(healthy) == 4 and set(healthy.values()) == {"Healthy"}


@pytest.mark.parametrize(("cloudwatch", "prometheus"), [
    ("HTTPCode_Target_5XX_Count", "http_code_target_5xx_count"),
    ("HTTPCode_ELB_5XX_Count", "http_code_elb_5xx_count"),
    ("RequestCountPerTarget", "request_count_per_target"),
    ("UnHealthyHostCount", "un_healthy_host_count"),
    ("CPUUtilization", "cpu_utilization"),
    ("AutoScalingGroupName", "auto_scaling_group_name"),
])
def test_cloudwatch_names_become_the_exporters_snake_case(cloudwatch: str,
                                                           prometheus: str) -> None:
    assert snake_case(cloudwatch) == prometheus
    assert family_name("AWS/ApplicationELB", cloudwatch) == f"aws_applicationelb_{prometheus}"


class _Page(HTMLParser):
    """What the page is made of: scripts, inline styles, inputs and their labels, forms."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_styles = 0
        self.inputs: list[str] = []
        self.labels: set[str] = set()
        self.forms: list[dict[str, str | None]] = []
        self.buttons_named = 0
        self.buttons = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.inline_styles += "style" in a or tag == "style"
        if any(name.startswith("on") for name in a):
            self.inline_styles += 1  # inline handlers count as inline code
        if tag == "script":
            self.scripts.append(a)
        elif tag == "input":
            self.inputs.append(a.get("id") or "")
        elif tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        elif tag == "form":
            self.forms.append(a)
        elif tag == "button":
            self.buttons += 1


def test_the_page_shows_the_fleet_and_loads_only_its_own_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    parsed = _Page()
    parsed.feed(page.text)
    assert parsed.scripts == [{"src": "/static/fleet.js", "defer": None}]
    assert parsed.inline_styles == 0
    assert parsed.inputs and set(parsed.inputs) <= parsed.labels  # every input labelled
    status = client.get("/api/fleet").json()
    instances = [i["InstanceId"] for g in status["AutoScalingGroups"] for i in g["Instances"]]
    kills = [f["data-instance"] for f in parsed.forms if f.get("data-action") == "kill"]
    assert kills == instances
    assert {f["data-group"] for f in parsed.forms if f.get("data-action") == "scale"} == {
        "web", "app"}
    for words in ("TargetTracking-app-AlarmHigh-1b2c", "shop.tierlake.test", "InService",
                  "2m 05s", "Target groups", "Activity history"):
        assert words in page.text
    for asset, kind in (("/static/fleet.js", "javascript"), ("/static/fleet.css", "text/css")):
        served = client.get(asset)
        assert served.status_code == 200 and kind in served.headers["content-type"]
    fragment = client.get("/fleet.fragment")
    assert fragment.status_code == 200 and fragment.headers["cache-control"] == "no-store"
    assert all(i in fragment.text for i in instances)
    assert not re.search(r"<script|<html", fragment.text)


def test_aws_shaped_describe_dicts_validate_as_they_are() -> None:
    """The supervisor can hand over DescribeAutoScalingGroups / DescribeTargetHealth shapes
    (as the group and target group describe themselves) without remapping each field."""
    described = {
        "AutoScalingGroupName": "app", "MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2,
        "DefaultCooldown": 30.0, "HealthCheckType": "ELB", "TargetGroupARNs": ["app"],
        "LaunchTemplate": {"LaunchTemplateName": "app", "Version": "3"},
        "CreatedTime": "2026-12-01T07:00:00Z",
        "Instances": [{"InstanceId": "i-0123456789abcdef0", "LifecycleState": "InService",
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False,
                       "LaunchTemplate": {"LaunchTemplateName": "app", "Version": "3"},
                       "LaunchTime": "2020-01-01T00:00:00Z", "Host": "127.0.0.1",
                       "Port": 41234, "Pid": 999, "WarmedUp": True}],
        "InstanceRefresh": {"InstanceRefreshId": "r-1", "AutoScalingGroupName": "app",
                            "Status": "InProgress", "StatusReason": None,
                            "StartTime": "2026-12-01T08:00:00Z", "PercentageComplete": 50,
                            "InstancesToUpdate": 1,
                            "Preferences": {"MinHealthyPercentage": 90, "InstanceWarmup": 5}},
    }
    group = GroupView.model_validate(described)
    assert group.target_group_names == ["app"]
    assert group.instances[0].age_seconds > 86400 * 365  # from LaunchTime
    assert group.instance_refresh is not None
    assert group.instance_refresh.min_healthy_percentage == 90
    shown = group.model_dump(by_alias=True)
    assert shown["TargetGroupNames"] == ["app"] and "TargetGroupARNs" not in shown

    tg = TargetGroupView.of("app", PROFILES["alb"], [
        {"Target": {"Id": "i-0123456789abcdef0", "Port": 41234}, "HealthCheckPort": "41234",
         "TargetHealth": {"State": "unhealthy", "Reason": "Target.Timeout",
                          "Description": "Request timed out"}},
        {"Target": {"Id": "i-0fedcba9876543210", "Port": 41235},
         "TargetHealth": {"State": "healthy"}, "InFlight": 3}])
    health = tg.model_dump(mode="json", by_alias=True)
    assert health["HealthCheck"] == {
        "HealthCheckPath": "/", "HealthCheckIntervalSeconds": 30.0,
        "HealthCheckTimeoutSeconds": 5.0, "HealthyThresholdCount": 5,
        "UnhealthyThresholdCount": 2, "Matcher": "200"}
    assert health["DeregistrationDelaySeconds"] == 300.0
    assert [t["TargetHealth"]["Reason"] for t in health["Targets"]] == ["Target.Timeout", None]
    assert [t["InFlight"] for t in health["Targets"]] == [0, 3]


@dataclass
class _Alarm:  # the fields of ops.cloudwatch.Alarm the view reads
    name: str = "TargetTracking-app-AlarmLow-9f"
    state: str = "ALARM"
    state_reason: str = "Threshold Crossed: 15 datapoints were less than the threshold (45.0)."
    namespace: str = "AWS/ApplicationELB"
    metric_name: str = "RequestCountPerTarget"
    dimensions: dict[str, str] = field(default_factory=lambda: {"TargetGroup": "app"})
    statistic: str = "Sum"
    comparison_operator: str = "LessThanThreshold"
    threshold: float = 45.0
    period: float = 10.0
    evaluation_periods: int = 15
    state_updated: float = 1_796_112_000.0  # 2026-12-01T08:00:00Z


def test_alarms_and_route53_record_sets_read_as_cloudwatch_and_route53_give_them() -> None:
    alarm = AlarmView.of(_Alarm()).model_dump(mode="json", by_alias=True)
    assert (alarm["AlarmName"], alarm["StateValue"], alarm["Threshold"]) == (
        "TargetTracking-app-AlarmLow-9f", "ALARM", 45.0)
    assert alarm["StateUpdatedTimestamp"] == "2026-12-01T08:00:00Z"
    records = [DnsRecordView.model_validate(r) for r in (
        {"Name": "shop.tierlake.test.", "Type": "A", "RoutingPolicy": "weighted",
         "SetIdentifier": "blue", "Weight": 200, "TTL": 5,
         "ResourceRecords": [{"Value": "127.0.0.1"}], "Healthy": True},
        {"Name": "app.tierlake.test.", "Type": "A", "RoutingPolicy": "simple",
         "AliasTarget": {"DNSName": "internal-app", "EvaluateTargetHealth": True,
                         "Addresses": ["127.0.0.1", "127.0.0.2"]}, "Healthy": False})]
    assert [(r.values, r.ttl, r.weight) for r in records] == [
        (["127.0.0.1"], 5, 200), (["127.0.0.1", "127.0.0.2"], None, None)]


def test_the_control_server_runs_on_the_loop_and_leaves_ctrl_c_to_the_supervisor(
        plane: FakeControlPlane) -> None:
    async def scenario() -> None:
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        server = ControlServer(create_control_app(plane), "127.0.0.1", 0)
        await server.start()
        try:
            assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"{server.url}/api/fleet")
            assert answer.status_code == 200
            assert answer.json()["AutoScalingGroups"][0]["AutoScalingGroupName"] == "web"
            taken = ControlServer(create_control_app(plane), "127.0.0.1", server.port)
            with pytest.raises(ConfigError, match=f"port {server.port} on 127.0.0.1 is in use"
                               r".*TIERLAKE_FLEET__CONTROL_PORT"):
                await taken.start()
        finally:
            await server.stop()
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{server.url}/health")

    asyncio.run(scenario())


# -- the page in a real browser ------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]


@pytest.mark.browser
def test_the_page_drives_the_fleet_in_chromium(plane: FakeControlPlane) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with serving(create_control_app(plane, refresh_seconds=0.5)) as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(url)
            expect(page.get_by_role("heading", name="Auto Scaling groups")).to_be_visible()

            # scale app to 3 with its form: a third card appears
            page.get_by_label("Desired capacity").nth(1).fill("3")
            page.get_by_role("button", name="Set capacity of app").click()
            expect(page.locator("#flash")).to_have_text("1 instance(s) launching.")
            assert plane.groups["app"].desired == 3
            expect(page.get_by_role("list", name="Instances of app").locator("li")
                   ).to_have_count(3)

            # kill a web instance: its card goes, the replacement is Pending
            victim = plane.groups["web"].instances[0].id
            page.get_by_role("button", name=f"Kill {victim} with SIGKILL").click()
            expect(page.locator("#flash")).to_contain_text(f"Sent SIGKILL to {victim}")
            expect(page.get_by_text(victim, exact=True)).to_have_count(0)

            # a refusal is shown as such
            page.get_by_role("button", name="Start instance refresh of web").click()
            expect(page.locator("#flash")).to_contain_text("refresh-web-1")
            page.get_by_role("button", name="Start instance refresh of web").click()
            expect(page.locator("#flash")).to_contain_text("already in progress")
            expect(page.locator("#flash")).to_have_class(re.compile("tone-bad"))

            # the page follows the plane by itself
            plane.groups["app"].instances[0].health = "Unhealthy"
            card = page.get_by_role("list", name="Instances of app").locator("li").first
            expect(card).to_contain_text("Unhealthy")

            # the CSP holds: a script injected inline does not run
            ran = page.evaluate("""() => { const s = document.createElement('script');
                s.textContent = 'window.injected = true'; document.body.appendChild(s);
                return window.injected === true; }""")
            assert ran is False
            csp_reports = [p for p in problems if "Content Security Policy" in p]
            assert len(csp_reports) == 1, problems  # the injection, and nothing else
        finally:
            browser.close()
    # the browser logs the refused second refresh (409); nothing else went wrong
    expected = ("Content Security Policy", "status of 409 (Conflict)")
    assert [p for p in problems if not any(e in p for e in expected)] == []
