"""Listener rules: each condition as ALB documents it, priorities, and each action, first
on the rule objects, then through a running balancer over real backends."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from lb_backends import AppBackend
from lb_helpers import Entries, balancer, client, group

from tierlake.edge.lb.rules import (
    FixedResponse,
    Forward,
    Redirect,
    RequestView,
    Rule,
    RuleSet,
    action_from_dict,
    condition_from_dict,
    rule_from_dict,
)

pytestmark = pytest.mark.timeout(60)


def view(path: str = "/", *, method: str = "GET", host: str = "shop.example.test",
         query: str = "", headers: dict[str, list[str]] | None = None,
         ip: str = "127.0.0.1") -> RequestView:
    return RequestView(method, path, query, host, headers or {}, ip)


def cond(field: str, values: list[object], **extra: object) -> object:
    return condition_from_dict({"Field": field, **extra} if extra else
                               {"Field": field, "Values": values})


def test_path_pattern_wildcards_are_case_sensitive_and_ignore_the_query() -> None:
    c = condition_from_dict({"Field": "path-pattern",
                             "PathPatternConfig": {"Values": ["/api/*", "/img/??.png"]}})
    assert c.matches(view("/api/products/7"))
    assert c.matches(view("/img/ab.png"))
    assert not c.matches(view("/img/abc.png"))  # ? is exactly one character
    assert not c.matches(view("/API/products"))  # case-sensitive
    assert not c.matches(view("/apix"))
    assert c.matches(view("/api/", query="a=/b"))


def test_host_header_is_case_insensitive_with_wildcards() -> None:
    c = condition_from_dict({"Field": "host-header", "Values": ["*.example.test"]})
    assert c.matches(view(host="Shop.EXAMPLE.test"))
    assert not c.matches(view(host="example.test"))


def test_http_header_name_and_values_case_insensitive() -> None:
    c = condition_from_dict({"Field": "http-header", "HttpHeaderConfig": {
        "HttpHeaderName": "User-Agent", "Values": ["*mobile*", "curl/?.*"]}})
    assert c.matches(view(headers={"user-agent": ["Browser (Mobile)"]}))
    assert c.matches(view(headers={"user-agent": ["curl/8.1"]}))
    assert not c.matches(view(headers={"user-agent": ["Desktop"]}))
    assert not c.matches(view())


def test_query_string_pairs_key_optional() -> None:
    c = condition_from_dict({"Field": "query-string", "QueryStringConfig": {"Values": [
        {"Key": "version", "Value": "v2*"}, {"Value": "beta"}]}})
    assert c.matches(view(query="version=V2.1"))
    assert c.matches(view(query="x=1&flag=beta"))
    assert not c.matches(view(query="version=v1"))
    assert not c.matches(view())


def test_method_is_exact_and_source_ip_is_cidr() -> None:
    m = condition_from_dict({"Field": "http-request-method", "Values": ["POST", "PUT"]})
    assert m.matches(view(method="PUT")) and not m.matches(view(method="GET"))
    s = condition_from_dict({"Field": "source-ip", "SourceIpConfig": {
        "Values": ["10.0.0.0/8", "127.0.0.0/8"]}})
    assert s.matches(view(ip="127.0.0.2")) and not s.matches(view(ip="192.0.2.1"))


def test_conditions_and_priorities() -> None:
    api = FixedResponse(200, message_body="api")
    admin = FixedResponse(403, message_body="no")
    default = FixedResponse(404, message_body="none")
    rules = RuleSet([
        Rule(20, [condition_from_dict({"Field": "path-pattern", "Values": ["/api/*"]})], api),
        Rule(5, [condition_from_dict({"Field": "path-pattern", "Values": ["/api/admin*"]}),
                 condition_from_dict({"Field": "http-request-method", "Values": ["POST"]})],
             admin),
    ], default)
    assert rules.route(view("/api/admin/x", method="POST")) == ("5", admin)
    assert rules.route(view("/api/admin/x")) == ("20", api)  # one condition of 5 fails
    assert rules.route(view("/other")) == ("0", default)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Rule(0, [cond("path-pattern", ["/"])], FixedResponse(200)), "1..50000"),
    (lambda: Rule(50001, [cond("path-pattern", ["/"])], FixedResponse(200)), "1..50000"),
    (lambda: RuleSet([Rule(3, [cond("path-pattern", ["/a"])], FixedResponse(200)),
                      Rule(3, [cond("path-pattern", ["/b"])], FixedResponse(200))],
                     FixedResponse(404)), "priority 3"),
    (lambda: Rule(1, [], FixedResponse(200)), "at least one condition"),
    (lambda: cond("path-pattern", ["/" + "a" * 200]), "at most 128"),
    (lambda: cond("cookie", ["x"]), "not a condition"),
    (lambda: cond("source-ip", ["10.0.0.1/8"]), "CIDR"),
    (lambda: cond("http-request-method", ["get"]), "upper case"),
    (lambda: FixedResponse(302), "2XX, 4XX or 5XX"),
    (lambda: FixedResponse(200, "image/png"), "content type"),
    (lambda: FixedResponse(200, message_body="x" * 1025), "1024"),
    (lambda: Redirect(), "loop"),
    (lambda: Redirect(path="x"), "start with '/'"),
    (lambda: Redirect(status_code="HTTP_307"), "HTTP_301"),
    (lambda: Redirect(host="#{hots}"), "unknown placeholder"),
    (lambda: Forward([]), "at least one target group"),
    (lambda: rule_from_dict({"Priority": 7, "Conditions": [
        {"Field": "path-pattern", "Values": ["/x"]}], "Actions": [
        {"Type": "forward", "TargetGroupArn": "nope"}]}, {}), "rule 7: no target group"),
])
def test_invalid_rules_say_what_to_fix(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build()  # type: ignore[operator]


def test_redirect_placeholders() -> None:
    to_https = Redirect(protocol="HTTPS", port="443", status_code="HTTP_301")
    assert to_https.location(protocol="http", host="shop.test", port=80, path="/a/b",
                             query="q=1") == "https://shop.test/a/b?q=1"
    moved = action_from_dict({"Type": "redirect", "RedirectConfig": {
        "Host": "new.#{host}", "Path": "/v2/#{path}", "Query": "#{query}&from=old",
        "StatusCode": "HTTP_302"}}, {})
    assert isinstance(moved, Redirect) and moved.http_status == 302
    assert moved.location(protocol="http", host="shop.test", port=8080, path="/cart",
                          query="") == "http://new.shop.test:8080/v2/cart?&from=old"


# --- through a running balancer ---------------------------------------------------------------


@pytest.fixture
async def backends() -> AsyncIterator[tuple[AppBackend, AppBackend]]:
    web, api = await AppBackend("web").start(), await AppBackend("api").start()
    yield web, api
    await web.stop()
    await api.stop()


@pytest.mark.anyio
async def test_rules_route_to_groups_and_answer_themselves(
        backends: tuple[AppBackend, AppBackend]) -> None:
    web_b, api_b = backends
    web, api = group("web", web_b.port), group("api", api_b.port)
    groups = {"web": web, "api": api}
    rules = [rule_from_dict(r, groups) for r in [
        {"Priority": 10, "Conditions": [{"Field": "path-pattern", "Values": ["/api/*"]}],
         "Actions": [{"Type": "forward", "TargetGroupArn": "api"}]},
        {"Priority": 20, "Conditions": [{"Field": "path-pattern", "Values": ["/old/*"]}],
         "Actions": [{"Type": "redirect", "RedirectConfig": {
             "Path": "/new/#{path}", "StatusCode": "HTTP_301"}}]},
        {"Priority": 30, "Conditions": [{"Field": "http-header", "HttpHeaderConfig": {
            "HttpHeaderName": "X-Maintenance", "Values": ["on"]}}],
         "Actions": [{"Type": "fixed-response", "FixedResponseConfig": {
             "StatusCode": "503", "ContentType": "application/json",
             "MessageBody": '{"down": true}'}}]},
    ]]
    log = Entries()
    async with balancer(web, rules, observers=[log]) as (lb, url), client() as c:
        r = await c.get(f"{url}/api/items")
        assert (r.status_code, r.text) == (200, "api /api/items")
        r = await c.get(f"{url}/shop")
        assert (r.status_code, r.text) == (200, "web /shop")
        r = await c.get(f"{url}/old/page?id=3")
        assert r.status_code == 301
        port = lb.listeners[0].port
        assert r.headers["location"] == f"http://127.0.0.1:{port}/new/old/page?id=3"
        r = await c.get(f"{url}/shop", headers={"X-Maintenance": "ON"})
        assert (r.status_code, r.json(), r.headers["content-type"]) == (
            503, {"down": True}, "application/json")
    priorities = [(e.matched_rule_priority, e.actions_executed, e.target_group)
                  for e in log.entries]
    assert priorities == [("10", ["forward"], "api"), ("0", ["forward"], "web"),
                          ("20", ["redirect"], "-"), ("30", ["fixed-response"], "-")]
    assert log.entries[2].redirect_url.endswith("/new/old/page?id=3")


@pytest.mark.anyio
async def test_weighted_forward_shares_by_weight(backends: tuple[AppBackend, AppBackend]
                                                 ) -> None:
    blue_b, green_b = backends
    blue, green = group("blue", blue_b.port), group("green", green_b.port)
    action = action_from_dict({"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": "blue", "Weight": 3}, {"TargetGroupArn": "green", "Weight": 1}]}},
        {"blue": blue, "green": green})
    async with balancer(action) as (_, url), client() as c:
        seen = Counter([(await c.get(f"{url}/")).headers["x-backend"] for _ in range(40)])
    assert seen == {"web": 30, "api": 10}
