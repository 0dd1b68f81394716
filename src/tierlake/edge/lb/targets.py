"""ALB target groups: registration, target health, routing, slow start and draining.

A :class:`TargetGroup` stands for an Elastic Load Balancing target group of instance
targets. It keeps ALB's behaviours, in ALB's words (AWS, "Target groups for your
Application Load Balancers",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html):

- Target health states and reason codes of ``DescribeTargetHealth``: a registered target is
  ``initial`` (``Elb.RegistrationInProgress``, then ``Elb.InitialHealthChecking`` once its
  checks run), ``healthy`` after ``healthy_threshold`` checks in a row pass, ``unhealthy``
  after ``unhealthy_threshold`` fail (``Target.Timeout``, ``Target.ResponseCodeMismatch``,
  ``Target.FailedHealthChecks``), ``draining`` while deregistered
  (``Target.DeregistrationInProgress``) and ``unused`` (``Target.NotRegistered``) once gone.
- Fail open: "If a target group contains only unhealthy registered targets, the load
  balancer routes requests to all those targets, regardless of their health status."
- Routing algorithms (``load_balancing.algorithm.type``): ``round_robin``,
  ``least_outstanding_requests``, ``weighted_random``.
- Slow start (``slow_start.duration_seconds``): a target that becomes healthy after its
  registration, while another healthy target is not in slow start, gets a share of requests
  that grows linearly until the duration ends; it leaves slow start early if it becomes
  unhealthy.
- Deregistration delay (``deregistration_delay.timeout_seconds``): a deregistered target
  gets no new requests; in-flight ones may finish until the delay, then it is removed.

The attributes follow "Edit target group attributes for your Application Load Balancer"
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html).

tierlake adds per-target weights (every algorithm honours them; 0 takes a target out of
rotation without deregistering it) and passive detection: the proxy reports a refused
connection and the target is unhealthy at once, until active checks restore it. It differs
from ALB on purpose in three points: a new target needs ``healthy_threshold`` passes (ALB
now counts one), a drained target is removed as soon as its last request ends (ALB shows
it ``draining`` until the delay ends), and fail open also routes to ``initial`` targets.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from tierlake.edge.lb.health import CheckResult, HealthChecker, parse_matcher
from tierlake.edge.lb.model import PROFILES, Reason, TargetGroupSettings, TargetState

log = structlog.get_logger(__name__)

# DescribeTargetHealth's descriptions for the reason codes the group itself sets.
REGISTRATION_DESCRIPTION = "Target registration is in progress"
INITIAL_DESCRIPTION = "Initial health checks in progress"
DEREGISTRATION_DESCRIPTION = "Target deregistration is in progress"
NOT_REGISTERED_DESCRIPTION = "Target is not registered to the target group"
PASSIVE_DESCRIPTION = "connection refused by the target (passive check)"
MAX_WEIGHT = 999  # as ALB's weights of target groups in a forward action (0-999)


class TargetGroupError(ValueError):
    """A request a target group cannot honour (bad weight, an id at a new address...)."""


@dataclass(eq=False)
class Target:
    """A registered target and its health, as the group sees it now."""

    id: str
    host: str
    port: int
    weight: int = 1
    state: TargetState = TargetState.INITIAL
    reason: Reason | None = Reason.REGISTRATION_IN_PROGRESS
    description: str = REGISTRATION_DESCRIPTION
    in_flight: int = 0
    registered_at: float = 0.0
    healthy_since: float | None = None
    # additions: counts the health checks and metrics read
    consecutive_passes: int = 0
    consecutive_failures: int = 0
    slow_start_began: float | None = None  # None: not in slow start
    requests: int = 0  # requests acquired in total (RequestCountPerTarget)
    last_status_code: int | None = None  # of the latest health check answered

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


class RoutingAlgorithm(Protocol):
    """Chooses one of the routable targets; ``weights[i]`` is ``targets[i]``'s effective
    weight (its weight, scaled down in slow start; always > 0). A new algorithm is a new
    class with this one method, added to :data:`ALGORITHMS`."""

    def choose(self, targets: Sequence[Target], weights: Sequence[float]) -> Target: ...

    def forget(self, target: Target) -> None:
        """``target`` left the group: drop any state kept for it."""


class RoundRobin:
    """Weighted round robin, smooth (nginx's): equal weights give the exact registration
    order A, B, C, A...; weights 2:1 give A, B, A, A, B, A... without bursts."""

    def __init__(self, rng: random.Random) -> None:
        self._current: dict[int, float] = {}

    def choose(self, targets: Sequence[Target], weights: Sequence[float]) -> Target:
        current = self._current
        best = targets[0]
        best_score = -float("inf")
        total = 0.0
        for target, weight in zip(targets, weights, strict=True):
            total += weight
            score = current.get(id(target), 0.0) + weight
            current[id(target)] = score
            if score > best_score:
                best, best_score = target, score
        current[id(best)] = best_score - total
        return best

    def forget(self, target: Target) -> None:
        self._current.pop(id(target), None)


class LeastOutstandingRequests:
    """The target with the fewest requests in flight per unit of weight ((in_flight + 1) /
    weight); ties go round the tied targets in turn so an idle group still spreads."""

    def __init__(self, rng: random.Random) -> None:
        self._turn = 0

    def choose(self, targets: Sequence[Target], weights: Sequence[float]) -> Target:
        loads = [(t.in_flight + 1) / w for t, w in zip(targets, weights, strict=True)]
        least = min(loads)
        tied = [t for t, load in zip(targets, loads, strict=True) if load <= least * (1 + 1e-9)]
        self._turn += 1
        return tied[self._turn % len(tied)]

    def forget(self, target: Target) -> None:
        pass


class WeightedRandom:
    """A random target, each with probability weight / total (seeded for repeatable runs)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, targets: Sequence[Target], weights: Sequence[float]) -> Target:
        return self._rng.choices(targets, weights=weights)[0]

    def forget(self, target: Target) -> None:
        pass


ALGORITHMS: dict[str, Callable[[random.Random], RoutingAlgorithm]] = {
    "round_robin": RoundRobin,
    "least_outstanding_requests": LeastOutstandingRequests,
    "weighted_random": WeightedRandom,
}


def make_algorithm(name: str, rng: random.Random) -> RoutingAlgorithm:
    try:
        return ALGORITHMS[name](rng)
    except KeyError:
        raise TargetGroupError(f"unknown routing algorithm {name!r}: use "
                               f"{', '.join(ALGORITHMS)}") from None


StateCallback = Callable[[Target, TargetState, TargetState], None]


class TargetGroup:
    """One target group: its targets, their health, and the choice of a target per request.

    Everything runs on one event loop; ``pick``/``acquire``/``release`` never await, so the
    proxy picks and acquires with no other task in between. ``clock`` (monotonic seconds)
    can be injected to drive slow start in tests; ``seed`` pins weighted random and the
    spread of the first health checks.
    """

    def __init__(self, name: str, settings: TargetGroupSettings = PROFILES["fast"], *,
                 client: httpx.AsyncClient | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not name:
            raise TargetGroupError("a target group needs a name")
        if settings.deregistration_delay_seconds < 0 or settings.slow_start_seconds < 0:
            raise TargetGroupError(
                "deregistration delay and slow start duration are seconds >= 0 (got "
                f"{settings.deregistration_delay_seconds}, {settings.slow_start_seconds})")
        parse_matcher(settings.health_check.matcher)  # a bad matcher fails here, not later
        self.name = name
        self.settings = settings
        self._clock = clock
        self._rng = random.Random(seed)
        self._algorithm = make_algorithm(settings.algorithm, self._rng)
        self._targets: dict[str, Target] = {}
        self._pool: list[Target] | None = None  # routable targets; None: to be worked out
        self._callbacks: list[StateCallback] = []
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._drained: dict[str, asyncio.Event] = {}
        self._client = client
        self._owns_client = False
        self._checker: HealthChecker | None = None

    # -- registration -------------------------------------------------------------------

    def register(self, target_id: str, host: str, port: int, *, weight: int = 1) -> Target:
        """Register a target (RegisterTargets). Idempotent for the same address; a draining
        target registered again goes back to ``initial`` and its deregistration ends
        without removing it."""
        _check_weight(weight)
        if not 0 < port < 65536:
            raise TargetGroupError(f"target {target_id!r}: port {port} is not 1-65535")
        known = self._targets.get(target_id)
        if known is not None:
            if known.address != (host, port):
                raise TargetGroupError(
                    f"target {target_id!r} is registered at {known.host}:{known.port}, not "
                    f"{host}:{port}; deregister it first or use another id")
            if known.state is not TargetState.DRAINING:
                return known
            known.weight = weight
            self._pool = None
            self._reset_checks(known)
            self._set(known, TargetState.INITIAL, Reason.REGISTRATION_IN_PROGRESS,
                      REGISTRATION_DESCRIPTION)
            self._drains.pop(target_id, None)
            event = self._drained.pop(target_id, None)
            if event is not None:
                event.set()  # its deregister() returns; the target stays
            self._watch(known)
            return known
        target = Target(target_id, host, port, weight, registered_at=self._clock())
        self._targets[target_id] = target
        self._pool = None
        log.info("lb.target_registered", group=self.name, target=target_id,
                 address=f"{host}:{port}", weight=weight)
        self._watch(target)
        return target

    async def deregister(self, target_id: str) -> None:
        """Deregister a target (DeregisterTargets) and wait for its draining to end: when no
        request is in flight any more, or when the deregistration delay has passed. Unknown
        ids are ignored (deregistering twice is harmless); a caller cancelled while waiting
        does not stop the draining."""
        target = self._targets.get(target_id)
        if target is None:
            return
        drain = self._drains.get(target_id)
        if drain is None:
            if self._checker is not None:
                self._checker.unwatch(target_id)
            self._set(target, TargetState.DRAINING, Reason.DEREGISTRATION_IN_PROGRESS,
                      DEREGISTRATION_DESCRIPTION)
            event = asyncio.Event()
            if target.in_flight == 0:
                event.set()
            self._drained[target_id] = event
            drain = asyncio.get_running_loop().create_task(
                self._drain(target, event), name=f"drain:{self.name}:{target_id}")
            self._drains[target_id] = drain
        await asyncio.wait({drain})  # not cancelled with its caller, nor raising if stopped

    async def _drain(self, target: Target, event: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(self.settings.deregistration_delay_seconds):
                await event.wait()
        except TimeoutError:
            log.warning("lb.drain_timeout", group=self.name, target=target.id,
                        in_flight=target.in_flight,
                        delay=self.settings.deregistration_delay_seconds)
        finally:
            self._finish_drain(target, event)

    def _finish_drain(self, target: Target, event: asyncio.Event) -> None:
        if self._drained.get(target.id) is event:  # else registered again meanwhile
            del self._drains[target.id], self._drained[target.id]
            self._remove(target)

    def _remove(self, target: Target) -> None:
        del self._targets[target.id]
        self._pool = None
        self._algorithm.forget(target)
        self._set(target, TargetState.UNUSED, Reason.NOT_REGISTERED, NOT_REGISTERED_DESCRIPTION)
        log.info("lb.target_deregistered", group=self.name, target=target.id,
                 in_flight=target.in_flight)

    def set_weight(self, target_id: str, weight: int) -> None:
        _check_weight(weight)
        self._get(target_id).weight = weight
        self._pool = None

    # -- routing ------------------------------------------------------------------------

    def pick(self, exclude: Collection[str] = ()) -> Target | None:
        """The target for the next request, or None when none is routable (answer 503).

        Routable: the healthy targets; if none is healthy, every registered target that is
        not draining (fail open). ``exclude``: ids already tried for this request; they do
        not count as "none healthy" (a retry never fails open to unhealthy targets while a
        healthy one exists)."""
        pool = self._pool
        if pool is None:
            active = [t for t in self._targets.values()
                      if t.state is not TargetState.DRAINING and t.weight > 0]
            pool = self._pool = [t for t in active if t.state is TargetState.HEALTHY] or active
        candidates = [t for t in pool if t.id not in exclude] if exclude else pool
        if not candidates:
            return None
        if not any(t.slow_start_began is not None for t in candidates):
            return self._algorithm.choose(candidates, [t.weight for t in candidates])
        now = self._clock()
        weights = [self._effective_weight(t, now) for t in candidates]
        if not any(weights):  # all at the very start of their slow start
            weights = [float(t.weight) for t in candidates]
        ramping = [(t, w) for t, w in zip(candidates, weights, strict=True) if w > 0]
        return self._algorithm.choose([t for t, _ in ramping], [w for _, w in ramping])

    def _effective_weight(self, target: Target, now: float) -> float:
        began = target.slow_start_began
        if began is None:
            return float(target.weight)
        duration = self.settings.slow_start_seconds
        elapsed = now - began
        if elapsed >= duration:
            target.slow_start_began = None
            log.info("lb.slow_start_end", group=self.name, target=target.id)
            return float(target.weight)
        return target.weight * max(elapsed, 0.0) / duration

    def acquire(self, target: Target) -> None:
        """A request was sent to ``target`` (count it in flight until :meth:`release`)."""
        target.in_flight += 1
        target.requests += 1

    def release(self, target: Target) -> None:
        """The request's answer came (or failed): ends draining when it was the last."""
        if target.in_flight <= 0:
            raise TargetGroupError(
                f"release() of target {target.id!r} without a matching acquire()")
        target.in_flight -= 1
        if target.in_flight == 0:
            event = self._drained.get(target.id)
            if event is not None and target.state is TargetState.DRAINING:
                event.set()

    def report_connect_failure(self, target: Target) -> None:
        """The proxy could not connect to ``target`` (refused, reset): with passive
        detection on, it is unhealthy at once; active checks bring it back."""
        if not self.settings.passive_detection:
            return
        if self._targets.get(target.id) is not target or target.state in (
                TargetState.DRAINING, TargetState.UNHEALTHY):
            return
        target.consecutive_passes = 0
        self._set(target, TargetState.UNHEALTHY, Reason.FAILED_HEALTH_CHECKS,
                  PASSIVE_DESCRIPTION)

    # -- health -------------------------------------------------------------------------

    def health(self, target_id: str) -> tuple[TargetState, Reason | None, str]:
        target = self._targets.get(target_id)
        if target is None:
            return TargetState.UNUSED, Reason.NOT_REGISTERED, NOT_REGISTERED_DESCRIPTION
        return target.state, target.reason, target.description

    def get(self, target_id: str) -> Target | None:
        """The registered target with this id (draining ones too), or None."""
        return self._targets.get(target_id)

    @property
    def targets(self) -> list[Target]:
        return list(self._targets.values())

    @property
    def healthy_count(self) -> int:
        """CloudWatch's HealthyHostCount."""
        return sum(t.state is TargetState.HEALTHY for t in self._targets.values())

    @property
    def unhealthy_count(self) -> int:
        """CloudWatch's UnHealthyHostCount."""
        return sum(t.state is TargetState.UNHEALTHY for t in self._targets.values())

    def describe(self, target_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
        """``DescribeTargetHealth``'s TargetHealthDescriptions, for every registered target
        or for ``target_ids`` (an id not registered shows as ``unused`` /
        ``Target.NotRegistered``, as AWS). Reason and Description only when not healthy."""
        rows: list[tuple[str, int | None, TargetState, Reason | None, str]]
        if target_ids is None:
            rows = [(t.id, t.port, t.state, t.reason, t.description)
                    for t in self._targets.values()]
        else:
            rows = []
            for target_id in target_ids:
                t = self._targets.get(target_id)
                rows.append((t.id, t.port, t.state, t.reason, t.description) if t else
                            (target_id, None, *self.health(target_id)))
        out: list[dict[str, Any]] = []
        for target_id, port, state, reason, description in rows:
            health: dict[str, Any] = {"State": str(state)}
            if reason is not None:
                health["Reason"] = str(reason)
                health["Description"] = description
            row: dict[str, Any] = {"Target": {"Id": target_id}, "TargetHealth": health}
            if port is not None:
                row["Target"]["Port"] = port
                row["HealthCheckPort"] = str(port)
            out.append(row)
        return out

    def on_change(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(target, old, new)`` on every state change of every target, until
        the returned function is called. A callback that raises is logged and skipped."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    # -- active checks ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the active health checks of every target (those registered later too)."""
        if self._checker is not None:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
            self._owns_client = True
        self._checker = HealthChecker(self.settings.health_check, self._client,
                                      on_result=self._record, rng=self._rng, group=self.name)
        for target in self._targets.values():
            self._watch(target)

    async def stop(self) -> None:
        """Stop the health checks; draining targets are removed now (nothing outlives)."""
        checker, self._checker = self._checker, None
        if checker is not None:
            await checker.close()
        drains = list(self._drains.values())
        for drain in drains:
            drain.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        for target_id, event in list(self._drained.items()):  # drains cancelled unstarted
            self._finish_drain(self._targets[target_id], event)
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client, self._owns_client = None, False

    def _watch(self, target: Target) -> None:
        if self._checker is None or target.state is TargetState.DRAINING:
            return
        if target.reason is Reason.REGISTRATION_IN_PROGRESS:
            target.reason, target.description = (Reason.INITIAL_HEALTH_CHECKING,
                                                 INITIAL_DESCRIPTION)
        self._checker.watch(target.id, target.host, target.port)

    def _record(self, target_id: str, result: CheckResult) -> None:
        target = self._targets.get(target_id)
        if target is None or target.state is TargetState.DRAINING:
            return
        hc = self.settings.health_check
        target.last_status_code = result.status_code
        if result.passed:
            target.consecutive_failures = 0
            target.consecutive_passes += 1
            if (target.state is not TargetState.HEALTHY
                    and target.consecutive_passes >= hc.healthy_threshold):
                self._set(target, TargetState.HEALTHY, None, "")
            return
        target.consecutive_passes = 0
        target.consecutive_failures += 1
        if target.state is TargetState.UNHEALTHY:
            target.reason, target.description = result.reason, result.description
        elif target.consecutive_failures >= hc.unhealthy_threshold:
            self._set(target, TargetState.UNHEALTHY, result.reason, result.description)

    def _reset_checks(self, target: Target) -> None:
        target.consecutive_passes = target.consecutive_failures = 0

    # -- state changes ------------------------------------------------------------------

    def _set(self, target: Target, new: TargetState, reason: Reason | None,
             description: str) -> None:
        old = target.state
        target.reason, target.description = reason, description
        if old is new:
            return
        now = self._clock()
        if new is TargetState.HEALTHY:
            target.healthy_since = now
            if (old is TargetState.INITIAL and self.settings.slow_start_seconds > 0
                    and any(t is not target and t.state is TargetState.HEALTHY
                            and t.slow_start_began is None for t in self._targets.values())):
                target.slow_start_began = now
        else:
            target.healthy_since = None
            target.slow_start_began = None
        target.state = new
        self._pool = None
        log.info("lb.target_state", group=self.name, target=target.id, old=str(old),
                 new=str(new), reason=str(reason) if reason else None, description=description)
        for callback in list(self._callbacks):
            try:
                callback(target, old, new)
            except Exception:
                log.exception("lb.on_change_error", group=self.name, target=target.id)

    def _get(self, target_id: str) -> Target:
        target = self._targets.get(target_id)
        if target is None:
            raise TargetGroupError(
                f"target {target_id!r} is not registered in target group {self.name!r}")
        return target


def _check_weight(weight: int) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise TargetGroupError(f"a target's weight is a whole number 0-{MAX_WEIGHT} "
                               f"(got {weight!r})")
