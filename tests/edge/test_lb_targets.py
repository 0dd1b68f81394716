"""Target groups: registration, routing algorithms, weights, slow start, fail open, draining
and passive detection, over real HTTP backends on free ports."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from targets_backends import (
    Backend,
    Make,
    anyio_backend,
    backend,
    quick,
    settle,
    target,
    until,
    until_state,
)

from tierlake.edge.lb.model import PROFILES, Reason, TargetState
from tierlake.edge.lb.targets import Target, TargetGroup, TargetGroupError

__all__ = ["anyio_backend", "backend"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


async def test_register_is_initial_then_healthy_and_idempotent(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick())
    target = group.register("a", "127.0.0.1", a.port)
    assert group.health("a") == (TargetState.INITIAL, Reason.REGISTRATION_IN_PROGRESS,
                                 "Target registration is in progress")
    assert group.register("a", "127.0.0.1", a.port) is target
    with pytest.raises(TargetGroupError, match="deregister it first"):
        group.register("a", "127.0.0.1", a.port + 1)
    assert group.describe(["a", "i-gone"]) == [
        {"Target": {"Id": "a", "Port": a.port}, "HealthCheckPort": str(a.port),
         "TargetHealth": {"State": "initial", "Reason": "Elb.RegistrationInProgress",
                          "Description": "Target registration is in progress"}},
        {"Target": {"Id": "i-gone"},
         "TargetHealth": {"State": "unused", "Reason": "Target.NotRegistered",
                          "Description": "Target is not registered to the target group"}}]
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
        ta = target(group, "a")
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
        held = target(group, "a")
        group.acquire(held)
        await asyncio.wait_for(group.deregister("a"), 5)
        assert group.health("a")[0] is TargetState.UNUSED
        assert group.pick() is None  # all draining or gone: nothing routable
        group.release(held)  # the late answer is still accounted for
        assert held.in_flight == 0
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
    assert hc.path == "/" and alb.algorithm == "round_robin" and alb.slow_start_seconds == 0


def ids(group: TargetGroup, n: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    out = []
    for _ in range(n):
        t = group.pick(exclude)
        assert t is not None
        out.append(t.id)
    return out


async def test_weighted_round_robin_is_smooth_and_exact(backend: Make) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick())
    await settle(group, a, b)
    try:
        group.set_weight("a", 2)
        assert ids(group, 6) == list("abaaba")
        assert Counter(ids(group, 300)) == {"a": 200, "b": 100}
        group.set_weight("b", 0)  # out of rotation, still registered and checked
        assert set(ids(group, 10)) == {"a"}
        assert group.health("b")[0] is TargetState.HEALTHY
    finally:
        await group.stop()


async def test_weighted_random_follows_weights_with_a_pinned_seed(backend: Make) -> None:
    bs = [await backend(n) for n in "abc"]
    group = TargetGroup("web", quick(algorithm="weighted_random"), seed=42)
    await settle(group, *bs)
    try:
        group.set_weight("a", 6)
        group.set_weight("b", 3)
        counts = Counter(ids(group, 6000))
        assert abs(counts["a"] / 6000 - 0.6) < 0.03
        assert abs(counts["b"] / 6000 - 0.3) < 0.03
        assert abs(counts["c"] / 6000 - 0.1) < 0.03
    finally:
        await group.stop()


async def test_weighted_random_is_repeatable_for_a_seed() -> None:
    def draw(seed: int) -> list[str]:
        group = TargetGroup("web", quick(algorithm="weighted_random"), seed=seed)
        for n, port in (("a", 1001), ("b", 1002), ("c", 1003)):
            group.register(n, "127.0.0.1", port)  # never checked: all initial, fail open
        return ids(group, 40)

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


async def test_least_outstanding_requests_prefers_fewer_in_flight(backend: Make) -> None:
    bs = [await backend(n) for n in "abc"]
    group = TargetGroup("web", quick(algorithm="least_outstanding_requests"))
    await settle(group, *bs)
    try:
        assert sorted(ids(group, 3)) == ["a", "b", "c"]  # idle: ties go round
        ta, tb, tc = (target(group, n) for n in "abc")
        for _ in range(3):
            group.acquire(ta)
        group.acquire(tc)
        assert ids(group, 4) == ["b"] * 4
        # each pick acquired, as the proxy does: the load evens out
        held = []
        for _ in range(4):
            t = group.pick()
            assert t is not None
            group.acquire(t)
            held.append(t.id)
        assert held[0] == "b" and "a" not in held
        assert ta.in_flight == 3 and sorted([tb.in_flight, tc.in_flight]) == [2, 3]
        # weight 2 takes twice the load before it looks as busy
        group.set_weight("a", 2)
        assert group.pick() is ta  # (3+1)/2 = 2 < (2+1)/1 = 3
    finally:
        await group.stop()


async def test_slow_start_ramps_a_new_target_linearly(backend: Make) -> None:
    now = [1000.0]
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick(slow_start_seconds=100), clock=lambda: now[0])
    await settle(group, a)
    try:
        assert target(group, "a").slow_start_began is None  # the first target: no slow start
        group.register("b", "127.0.0.1", b.port)
        await until_state(group, "b", TargetState.HEALTHY)
        tb = target(group, "b")
        assert tb.slow_start_began == 1000.0 and tb.healthy_since == 1000.0
        assert set(ids(group, 50)) == {"a"}  # share 0 at the start
        now[0] = 1025.0  # a quarter through: weight 0.25 against 1
        assert abs(Counter(ids(group, 500))["b"] - 100) <= 2
        now[0] = 1050.0  # half: 0.5 against 1
        assert abs(Counter(ids(group, 600))["b"] - 200) <= 2
        now[0] = 1100.0  # over: the full share, and out of slow start
        assert Counter(ids(group, 100)) == {"a": 50, "b": 50}
        assert tb.slow_start_began is None
    finally:
        await group.stop()


async def test_slow_start_ends_when_the_target_turns_unhealthy(backend: Make) -> None:
    now = [0.0]
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick(slow_start_seconds=100), clock=lambda: now[0])
    await settle(group, a, b)  # both healthy: whichever was second may be in slow start
    try:
        c = await backend("c")
        group.register("c", "127.0.0.1", c.port)
        await until_state(group, "c", TargetState.HEALTHY)
        tc = target(group, "c")
        assert tc.slow_start_began == 0.0
        group.report_connect_failure(tc)
        assert tc.slow_start_began is None
        await until_state(group, "c", TargetState.HEALTHY)
        assert tc.slow_start_began is None  # back from unhealthy: full share at once
        now[0] = 1.0
        assert "c" in ids(group, 3)
    finally:
        await group.stop()


async def test_fail_open_when_no_target_is_healthy(backend: Make) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick())
    await settle(group, a, b)
    try:
        a.mode = b.mode = "fail"
        await until_state(group, "a", TargetState.UNHEALTHY)
        await until_state(group, "b", TargetState.UNHEALTHY)
        assert ids(group, 4) == list("abab")  # all unhealthy: all routable
        b.mode = "ok"
        await until_state(group, "b", TargetState.HEALTHY)
        assert set(ids(group, 6)) == {"b"}
        # a retry that already tried the healthy one does not fail open to the unhealthy
        assert group.pick(exclude={"b"}) is None
    finally:
        await group.stop()


async def test_none_when_every_target_is_draining(backend: Make) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick(deregistration_delay_seconds=20))
    await settle(group, a, b)
    try:
        held = [target(group, "a"), target(group, "b")]
        for t in held:
            group.acquire(t)
        drains = [asyncio.create_task(group.deregister(n)) for n in "ab"]
        await until(lambda: group.healthy_count == 0, "both draining")
        assert group.pick() is None
        assert group.unhealthy_count == 0  # draining is not unhealthy (as CloudWatch)
        for t in held:
            group.release(t)
        await asyncio.wait_for(asyncio.gather(*drains), 5)
        assert group.targets == []
    finally:
        await group.stop()


async def test_passive_detection_takes_a_target_out_at_once(backend: Make) -> None:
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick())
    await settle(group, a, b)
    try:
        ta = target(group, "a")
        group.report_connect_failure(ta)
        assert group.health("a") == (TargetState.UNHEALTHY, Reason.FAILED_HEALTH_CHECKS,
                                     "connection refused by the target (passive check)")
        assert set(ids(group, 6)) == {"b"}
        await until_state(group, "a", TargetState.HEALTHY)  # it answers its checks again
        assert set(ids(group, 6)) == {"a", "b"}
    finally:
        await group.stop()


async def test_passive_detection_can_be_off(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(passive_detection=False))
    await settle(group, a)
    try:
        group.report_connect_failure(target(group, "a"))
        assert group.health("a")[0] is TargetState.HEALTHY
    finally:
        await group.stop()


async def test_registering_a_draining_target_again_keeps_it(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(deregistration_delay_seconds=20))
    await settle(group, a)
    try:
        ta = target(group, "a")
        group.acquire(ta)
        drain = asyncio.create_task(group.deregister("a"))
        await until_state(group, "a", TargetState.DRAINING)
        assert group.register("a", "127.0.0.1", a.port) is ta
        await asyncio.wait_for(drain, 5)  # deregistration ended, the target stays
        assert group.health("a")[0] in (TargetState.INITIAL, TargetState.HEALTHY)
        await until_state(group, "a", TargetState.HEALTHY)
        # deregistered, registered and deregistered again at once: the last one counts
        again = asyncio.create_task(group.deregister("a"))
        await until_state(group, "a", TargetState.DRAINING)
        group.register("a", "127.0.0.1", a.port)
        last = asyncio.create_task(group.deregister("a"))
        await asyncio.wait_for(again, 5)
        assert group.health("a")[0] is TargetState.DRAINING
        group.release(ta)
        await asyncio.wait_for(last, 5)
        assert group.health("a")[0] is TargetState.UNUSED
    finally:
        await group.stop()


async def test_stop_ends_pending_drains(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick(deregistration_delay_seconds=60))
    await settle(group, a)
    group.acquire(target(group, "a"))
    drain = asyncio.create_task(group.deregister("a"))
    await until_state(group, "a", TargetState.DRAINING)
    await group.stop()
    await asyncio.wait_for(drain, 5)
    assert group.health("a")[0] is TargetState.UNUSED


async def test_a_failing_callback_does_not_stop_the_others(backend: Make) -> None:
    a = await backend("a")
    group = TargetGroup("web", quick())
    seen: list[str] = []

    def broken(t: Target, old: TargetState, new: TargetState) -> None:
        raise RuntimeError("observer bug")

    group.on_change(broken)
    unsubscribe = group.on_change(lambda t, old, new: seen.append(str(new)))
    await settle(group, a)
    unsubscribe()
    group.report_connect_failure(target(group, "a"))
    await group.stop()
    assert seen == ["healthy"]  # not told of the change after unsubscribing


def test_bad_input_is_refused_with_a_reason() -> None:
    group = TargetGroup("web", quick())
    with pytest.raises(TargetGroupError, match="weight is a whole number 0-999"):
        group.register("a", "127.0.0.1", 8080, weight=-1)
    with pytest.raises(TargetGroupError, match="port 0 is not 1-65535"):
        group.register("a", "127.0.0.1", 0)
    with pytest.raises(TargetGroupError, match="not registered in target group 'web'"):
        group.set_weight("nobody", 2)
    with pytest.raises(TargetGroupError, match="unknown routing algorithm 'fastest'"):
        TargetGroup("web", quick(algorithm="fastest"))
    assert group.health("nobody") == (TargetState.UNUSED, Reason.NOT_REGISTERED,
                                      "Target is not registered to the target group")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(weights=st.lists(st.integers(1, 12), min_size=1, max_size=6),
       cycles=st.integers(1, 3))
def test_round_robin_gives_each_target_exactly_its_weight(weights: list[int],
                                                          cycles: int) -> None:
    """Over sum(weights) picks, smooth weighted round robin serves each target exactly its
    weight, and at every point of the sequence each target is less than one request away
    from its exact share (no bursts)."""
    group = TargetGroup("web", quick())
    for i, w in enumerate(weights):
        group.register(f"t{i}", "127.0.0.1", 1000 + i, weight=w)  # unchecked: fail open
    picks = ids(group, sum(weights) * cycles)
    assert Counter(picks) == {f"t{i}": w * cycles for i, w in enumerate(weights)}
    total, served = sum(weights), Counter[str]()
    for k, picked in enumerate(picks, start=1):
        served[picked] += 1
        assert all(abs(served[f"t{i}"] - k * w / total) < 1 for i, w in enumerate(weights))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(ops=st.lists(st.tuples(st.sampled_from(["fail", "weight0", "weight1", "exclude",
                                               "drain"]),
                              st.integers(0, 4)), max_size=20))
def test_pick_never_returns_excluded_draining_or_weightless(
        ops: list[tuple[str, int]]) -> None:
    async def run() -> None:
        group = TargetGroup("web", quick(deregistration_delay_seconds=60))
        for i in range(5):
            group.register(f"t{i}", "127.0.0.1", 1000 + i)  # unchecked: fail open
        excluded: set[str] = set()
        for op, i in ops:
            t = group.get(f"t{i}")
            if t is None or t.state is TargetState.DRAINING:
                continue
            if op == "fail":
                group.report_connect_failure(t)
            elif op == "weight0":
                group.set_weight(t.id, 0)
            elif op == "weight1":
                group.set_weight(t.id, 1)
            elif op == "exclude":
                excluded.add(t.id)
            else:  # a request in flight keeps it draining
                group.acquire(t)
                asyncio.get_running_loop().create_task(group.deregister(t.id))
                await asyncio.sleep(0)
                assert t.state is TargetState.DRAINING
            allowed = {x.id for x in group.targets if x.weight > 0 and x.id not in excluded
                       and x.state is not TargetState.DRAINING}
            picked = group.pick(excluded)
            if allowed:
                assert picked is not None and picked.id in allowed
            else:
                assert picked is None
        await group.stop()
        assert all(x.state is not TargetState.DRAINING for x in group.targets)

    asyncio.run(run())


async def test_no_request_fails_when_a_target_dies_and_comes_back(backend: Make) -> None:
    """The proxy's use of the group: pick, acquire, send, release; a refused connection is
    reported and the request tried on another target. A killed target costs no request and
    gets traffic again once its checks pass."""
    a, b = await backend("a"), await backend("b")
    group = TargetGroup("web", quick())
    await settle(group, a, b)

    async def send(client: httpx.AsyncClient) -> str:
        tried: set[str] = set()
        while True:
            t = group.pick(tried)
            assert t is not None, f"no target left after trying {sorted(tried)}"
            group.acquire(t)
            try:
                response = await client.get(f"http://{t.host}:{t.port}/page")
            except httpx.ConnectError:
                group.report_connect_failure(t)
                tried.add(t.id)
                continue
            finally:
                group.release(t)
            return response.text

    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            assert Counter([await send(client) for _ in range(10)]) == {"a": 5, "b": 5}
            await a.stop()
            assert [await send(client) for _ in range(10)] == ["b"] * 10
            assert group.health("a")[0] is TargetState.UNHEALTHY
            revived = await Backend("a", port=a.port).start()
            try:
                await until_state(group, "a", TargetState.HEALTHY)
                served = Counter([await send(client) for _ in range(10)])
                assert served["a"] >= 4 and served["b"] >= 4
            finally:
                await revived.stop()
    finally:
        await group.stop()
