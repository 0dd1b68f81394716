"""Target groups: registration, routing algorithms, weights, slow start, fail open, draining
and passive detection, over real HTTP backends on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from targets_backends import Backend, anyio_backend, quick, settle, until, until_state

from tierlake.edge.lb.model import PROFILES, Reason, TargetState
from tierlake.edge.lb.targets import Target, TargetGroup, TargetGroupError

__all__ = ["anyio_backend"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

Make = Callable[[str], Awaitable[Backend]]


@pytest.fixture
async def backend() -> AsyncIterator[Make]:
    started: list[Backend] = []

    async def make(name: str) -> Backend:
        b = await Backend(name).start()
        started.append(b)
        return b

    yield make
    for b in started:
        await b.stop()


async def test_register_is_initial_then_healthy_and_idempotent(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick())
    target = group.register("a", "127.0.0.1", a.port)
    assert group.health("a") == (TargetState.INITIAL, Reason.REGISTRATION_IN_PROGRESS,
                                 "Target registration is in progress")
    assert group.register("a", "127.0.0.1", a.port) is target
    with pytest.raises(TargetGroupError, match="deregister it first"):
        group.register("a", "127.0.0.1", a.port + 1)
    await group.start()
    try:
        assert group.health("a")[1] is Reason.INITIAL_HEALTH_CHECKING
        await until_state(group, "a", TargetState.HEALTHY)
        assert group.healthy_count == 1 and group.unhealthy_count == 0
        assert group.describe() == [{"Target": {"Id": "a", "Port": a.port},
                                     "HealthCheckPort": str(a.port),
                                     "TargetHealth": {"State": "healthy"}}]
    finally:
        await group.stop()


async def test_round_robin_exact_order(backend: Make) -> None:
    bs = [await backend(n) for n in "abc"]
    group = TargetGroup("web", quick())
    await settle(group, *bs)
    try:
        picks = []
        for _ in range(9):
            t = group.pick()
            assert t is not None
            picks.append(t.id)
        assert picks == list("abcabcabc")
        # a request that already tried a and b goes to c
        tried = group.pick(exclude={"a", "b"})
        assert tried is not None and tried.id == "c"
        assert group.pick(exclude={"a", "b", "c"}) is None
    finally:
        await group.stop()


async def test_none_when_nothing_registered() -> None:
    assert TargetGroup("empty", quick()).pick() is None


async def test_deregister_returns_once_in_flight_requests_end(backend: Make) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick(deregistration_delay_seconds=20))
    await settle(group, a, b)
    changes: list[tuple[str, TargetState, TargetState]] = []
    group.on_change(lambda t, old, new: changes.append((t.id, old, new)))
    try:
        ta = group._get("a")
        group.acquire(ta)
        drain = asyncio.create_task(group.deregister("a"))
        await until(lambda: group.health("a")[0] is TargetState.DRAINING, "a draining")
        assert group.health("a") == (TargetState.DRAINING, Reason.DEREGISTRATION_IN_PROGRESS,
                                     "Target deregistration is in progress")
        assert {group.pick().id for _ in range(6)} == {"b"}  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        assert not drain.done()  # a request is still in flight
        group.release(ta)
        await asyncio.wait_for(drain, 5)  # well before the 20 s delay
        assert group.health("a") == (TargetState.UNUSED, Reason.NOT_REGISTERED,
                                     "Target is not registered to the target group")
        assert [d["Target"]["Id"] for d in group.describe()] == ["b"]
        assert changes == [("a", TargetState.HEALTHY, TargetState.DRAINING),
                           ("a", TargetState.DRAINING, TargetState.UNUSED)]
    finally:
        await group.stop()


async def test_deregister_ends_at_the_delay_when_requests_hang(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(deregistration_delay_seconds=0.3))
    await settle(group, a)
    try:
        target = group._get("a")
        group.acquire(target)
        await asyncio.wait_for(group.deregister("a"), 5)
        assert group.health("a")[0] is TargetState.UNUSED
        assert group.pick() is None  # all draining or gone: nothing routable
        group.release(target)  # the late answer is still accounted for
        assert target.in_flight == 0
    finally:
        await group.stop()


async def test_acquire_release_counts(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick())
    t: Target = group.register("a", "127.0.0.1", a.port)
    group.acquire(t)
    group.acquire(t)
    assert t.in_flight == 2 and t.requests == 2
    group.release(t)
    group.release(t)
    with pytest.raises(TargetGroupError, match="without a matching acquire"):
        group.release(t)


def test_alb_profile_equals_aws_defaults() -> None:
    alb = PROFILES["alb"]
    hc = alb.health_check
    assert (hc.interval_seconds, hc.timeout_seconds, hc.healthy_threshold,
            hc.unhealthy_threshold, hc.matcher) == (30, 5, 5, 2, "200")
    assert alb.deregistration_delay_seconds == 300
    assert alb.algorithm == "round_robin" and alb.slow_start_seconds == 0
