"""Active health checks against real HTTP backends: ALB's state machine, reason codes,
thresholds and matchers; checks of a hanging target do not hold up the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from targets_backends import (
    Backend,
    Make,
    anyio_backend,
    backend,
    dead_port,
    quick,
    target,
    until,
    until_state,
)

from tierlake.edge.lb.health import MatcherError, parse_matcher
from tierlake.edge.lb.model import HealthCheckSettings, Reason, TargetGroupSettings, TargetState
from tierlake.edge.lb.targets import Target, TargetGroup

__all__ = ["anyio_backend", "backend"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
async def groups() -> AsyncIterator[list[TargetGroup]]:
    made: list[TargetGroup] = []
    yield made
    for g in made:
        await g.stop()


def transitions(group: TargetGroup, backend: Backend) -> list[tuple[str, str, int]]:
    """(old, new, health checks the backend had received) at each state change."""
    seen: list[tuple[str, str, int]] = []

    def record(t: Target, old: TargetState, new: TargetState) -> None:
        seen.append((str(old), str(new), backend.checks))

    group.on_change(record)
    return seen


async def test_healthy_after_threshold_then_each_reason_and_back(
        backend: Make, groups: list[TargetGroup]) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(healthy_threshold=3, unhealthy_threshold=2), seed=1)
    groups.append(group)
    seen = transitions(group, a)
    group.register("a", "127.0.0.1", a.port)
    await group.start()
    assert group.health("a") == (TargetState.INITIAL, Reason.INITIAL_HEALTH_CHECKING,
                                 "Initial health checks in progress")
    await until_state(group, "a", TargetState.HEALTHY)
    assert seen == [("initial", "healthy", 3)]  # exactly healthy_threshold passes
    assert a.user_agents[0] == "ELB-HealthChecker/2.0"

    a.mode = "fail"
    await until_state(group, "a", TargetState.UNHEALTHY)
    assert seen[-1] == ("healthy", "unhealthy", 3 + 2)  # exactly unhealthy_threshold failures
    assert group.health("a") == (TargetState.UNHEALTHY, Reason.RESPONSE_CODE_MISMATCH,
                                 "Health checks failed with these codes: [503]")
    assert group.unhealthy_count == 1 and group.healthy_count == 0
    assert group.describe()[0]["TargetHealth"] == {
        "State": "unhealthy", "Reason": "Target.ResponseCodeMismatch",
        "Description": "Health checks failed with these codes: [503]"}

    a.mode = "hang"  # still unhealthy; the reason follows the latest failure
    await until(lambda: group.health("a")[1] is Reason.TIMEOUT, "reason Target.Timeout")
    assert group.health("a") == (TargetState.UNHEALTHY, Reason.TIMEOUT, "Request timed out")

    a.mode = "ok"
    await until_state(group, "a", TargetState.HEALTHY)
    assert group.health("a") == (TargetState.HEALTHY, None, "")
    assert [s[:2] for s in seen] == [("initial", "healthy"), ("healthy", "unhealthy"),
                                     ("unhealthy", "healthy")]

    a.mode = "hang"
    await until_state(group, "a", TargetState.UNHEALTHY)
    assert group.health("a")[:2] == (TargetState.UNHEALTHY, Reason.TIMEOUT)

    a.mode = "ok"
    await until_state(group, "a", TargetState.HEALTHY)
    await a.stop()  # the port is closed: connection refused
    await until_state(group, "a", TargetState.UNHEALTHY)
    assert group.health("a") == (TargetState.UNHEALTHY, Reason.FAILED_HEALTH_CHECKS,
                                 "Health checks failed")


async def test_initial_target_that_never_answers_becomes_unhealthy(
        groups: list[TargetGroup]) -> None:
    group = TargetGroup("web", quick(unhealthy_threshold=3), seed=2)
    groups.append(group)
    group.register("gone", "127.0.0.1", dead_port())
    await group.start()
    await until_state(group, "gone", TargetState.UNHEALTHY)
    assert group.health("gone")[1] is Reason.FAILED_HEALTH_CHECKS
    assert target(group, "gone").consecutive_failures >= 3


async def test_unhealthy_threshold_tolerates_fewer_failures(
        backend: Make, groups: list[TargetGroup]) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(unhealthy_threshold=4, healthy_threshold=1), seed=3)
    groups.append(group)
    seen = transitions(group, a)
    group.register("a", "127.0.0.1", a.port)
    await group.start()
    await until_state(group, "a", TargetState.HEALTHY)
    before = a.checks
    a.mode = "fail"
    await until(lambda: a.checks >= before + 3, "three failed checks")
    a.mode = "ok"  # three failures, then a pass: the streak is broken
    await until(lambda: target(group, "a").consecutive_passes >= 1, "a passing check")
    assert group.health("a")[0] is TargetState.HEALTHY
    a.mode = "fail"
    await until_state(group, "a", TargetState.UNHEALTHY)
    assert seen[-1][:2] == ("healthy", "unhealthy")


@pytest.mark.parametrize(("matcher", "code", "state"), [
    ("200-299", 204, TargetState.HEALTHY),
    ("200-299", 302, TargetState.UNHEALTHY),
    ("200,302", 302, TargetState.HEALTHY),
    ("200", 204, TargetState.UNHEALTHY),
    ("200-204,404", 404, TargetState.HEALTHY),
])
async def test_matcher_codes_and_ranges(backend: Make, groups: list[TargetGroup],
                                        matcher: str, code: int, state: TargetState) -> None:
    a = await backend("a")
    a.mode, a.code = "code", code
    group = TargetGroup("web", quick(matcher=matcher), seed=4)
    groups.append(group)
    group.register("a", "127.0.0.1", a.port)
    await group.start()
    await until_state(group, "a", state)
    if state is TargetState.UNHEALTHY:
        assert group.health("a") == (state, Reason.RESPONSE_CODE_MISMATCH,
                                     f"Health checks failed with these codes: [{code}]")


@pytest.mark.parametrize(("matcher", "complaint"), [
    ("ok", "not an HTTP code"), ("100", "outside 200-499"), ("299-200", "empty range"),
    ("200-600", "outside 200-499"), ("200,,204", "not an HTTP code"),
])
def test_bad_matchers_say_what_to_write(matcher: str, complaint: str) -> None:
    with pytest.raises(MatcherError, match=complaint):
        parse_matcher(matcher)
    settings = TargetGroupSettings(health_check=HealthCheckSettings(matcher=matcher))
    with pytest.raises(MatcherError, match="ALB accepts|codes like"):
        TargetGroup("web", settings)


def test_matcher_parses_lists_and_ranges() -> None:
    assert parse_matcher("200") == {200}
    assert parse_matcher("200, 204") == {200, 204}
    assert parse_matcher("200-202,404") == {200, 201, 202, 404}


async def test_a_hanging_target_does_not_hold_up_the_others(
        backend: Make, groups: list[TargetGroup]) -> None:
    slow, quick_one = await backend("slow"), await backend("quick")
    slow.mode = "hang"
    quick_one.peer = slow
    group = TargetGroup("web", quick(interval_seconds=0.2, timeout_seconds=0.18,
                                     healthy_threshold=2), seed=5)
    groups.append(group)
    group.register("slow", "127.0.0.1", slow.port)
    group.register("quick", "127.0.0.1", quick_one.port)
    await group.start()
    await until_state(group, "quick", TargetState.HEALTHY)
    await until(lambda: any(quick_one.peer_hanging), "a check of quick while slow hangs")
    await until_state(group, "slow", TargetState.UNHEALTHY)
    assert group.health("slow")[1] is Reason.TIMEOUT


async def test_first_checks_are_spread(backend: Make, groups: list[TargetGroup]) -> None:
    bs = [await backend(f"b{i}") for i in range(10)]
    group = TargetGroup("web", quick(interval_seconds=5.0, timeout_seconds=1.0), seed=6)
    groups.append(group)
    for b in bs:
        group.register(b.name, "127.0.0.1", b.port)
    await group.start()
    await until(lambda: any(b.checks for b in bs), "a first check", deadline=10)
    assert sum(b.checks > 0 for b in bs) < len(bs)


async def test_draining_targets_are_not_checked(backend: Make,
                                                groups: list[TargetGroup]) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick(deregistration_delay_seconds=20), seed=7)
    groups.append(group)
    group.register("a", "127.0.0.1", a.port)
    group.register("b", "127.0.0.1", b.port)
    await group.start()
    await until_state(group, "a", TargetState.HEALTHY)
    held = target(group, "a")
    group.acquire(held)
    drain = asyncio.create_task(group.deregister("a"))
    await until_state(group, "a", TargetState.DRAINING)
    a.mode = "fail"
    after, b_after = a.checks, b.checks
    await until(lambda: b.checks >= b_after + 4, "four more checks of b")
    assert a.checks <= after + 1  # at most the check already under way
    assert group.health("a")[0] is TargetState.DRAINING  # failures while draining don't count
    group.release(held)
    await asyncio.wait_for(drain, 5)
    assert group.health("a")[0] is TargetState.UNUSED
