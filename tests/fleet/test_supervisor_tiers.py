"""The traffic path the supervisor builds for the tiers of the registry: the BI tier behind
the internet-facing balancer's `/bi` rule and its own, in a start order that lets the rule
find its target group. (The whole path under `tierlake up`: tests/e2e/test_bi_freshness.py.)"""

from __future__ import annotations

import pytest

from tierlake.config import Settings
from tierlake.edge.lb.rules import Forward, RequestView
from tierlake.errors import ConfigError
from tierlake.fleet.supervisor import Supervisor, start_order
from tierlake.fleet.tiers import TIERS, Tier


def _request(path: str) -> RequestView:
    return RequestView(method="GET", path=path, query="", host="shop.tierlake.test",
                       headers={}, source_ip="127.0.0.1")


def _routed(supervisor: Supervisor, balancer: str, path: str) -> tuple[str, str]:
    """(the rule's priority, the target group it forwards to) for ``path``."""
    lb = supervisor.paths[balancer].balancer
    priority, action = lb.listeners[0].ruleset.route(_request(path))
    assert isinstance(action, Forward)
    [(group, _)] = action.target_groups
    return priority, group.name


@pytest.fixture
def supervisor() -> Supervisor:
    return Supervisor(Settings(dns={"enabled": False}))


def test_the_front_balancer_sends_bi_paths_to_the_bi_group(supervisor: Supervisor) -> None:
    assert _routed(supervisor, "web", "/bi") == ("10", "bi")
    assert _routed(supervisor, "web", "/bi/") == ("10", "bi")
    assert _routed(supervisor, "web", "/bi/dashboards/sales?start=2026-01-01") == ("10", "bi")
    assert _routed(supervisor, "web", "/bi/api/freshness") == ("10", "bi")
    for path in ("/", "/bin", "/biscuits", "/products/bi", "/BI/", "/api/v1/products"):
        assert _routed(supervisor, "web", path) == ("0", "web"), path  # the default action
    assert _routed(supervisor, "bi", "/anything") == ("0", "bi")
    assert _routed(supervisor, "app", "/bi/") == ("0", "app")


def test_one_bi_group_behind_both_listeners(supervisor: Supervisor) -> None:
    web, bi = supervisor.paths["web"], supervisor.paths["bi"]
    assert [tg.name for tg in web.balancer.target_groups] == ["bi", "web"]
    assert bi.balancer.target_groups == [bi.target_group]
    assert web.balancer.target_groups[0] is bi.target_group  # one group, checked once
    assert (bi.group.min_size, bi.group.max_size) == (1, 2)
    assert bi.balancer.scheme == "internet-facing"
    assert supervisor.paths["app"].balancer.scheme == "internal"
    assert bi.balancer.listeners[0].port == Settings().bi_port
    line, mail = supervisor.banner_lines()
    assert "/bi/" in line and "1-2 instances" in line
    assert f"SMTP 127.0.0.1:{Settings().bi.smtp_port}" in mail and "/bi/mail" in mail


def test_bi_group_size_comes_from_the_fleet_settings() -> None:
    s = Supervisor(Settings(dns={"enabled": False}, fleet={"bi_min": 2, "bi_max": 3}))
    assert (s.paths["bi"].group.min_size, s.paths["bi"].group.max_size) == (2, 3)
    with pytest.raises(ValueError, match="bi_min .3. is above bi_max .2."):
        Settings(fleet={"bi_min": 3, "bi_max": 2})


def test_tiers_start_after_those_they_need() -> None:
    order = [t.name for t in start_order(TIERS.values())]
    assert order.index("app") < order.index("web") and order.index("bi") < order.index("web")
    component_names = [c.name for c in Supervisor(Settings(dns={"enabled": False})).components]
    assert component_names.index("tierlake-bi load balancer") < component_names.index(
        "tierlake-web load balancer")
    looped = [Tier("a", TIERS["app"].build, "app_port", calls=("b", "X")),
              Tier("b", TIERS["app"].build, "web_port", calls=("a", "Y"))]
    with pytest.raises(ConfigError, match="in a circle"):
        start_order(looped)
