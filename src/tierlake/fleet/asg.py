"""EC2 Auto Scaling groups of real OS processes.

An :class:`AutoScalingGroup` keeps its desired capacity of instances, each an OS process
started from a :class:`~tierlake.fleet.launch.LaunchTemplate` on a free port. What it keeps
of EC2 Auto Scaling:

* min/max/desired capacity and AWS's ``ValidationError`` wording when a request is outside
  them ("New SetDesiredCapacity value 5 is above max value 4 for the AutoScalingGroup.");
* instance lifecycle states (``Pending``, ``Pending:Wait``, ``InService``, ``Terminating``,
  ``Terminating:Wait``, ``Terminated``), health status ``Healthy``/``Unhealthy``, launch
  time, scale-in protection;
* target groups: an instance is registered once in service (the load balancer's health
  checks then decide routing) and deregistered, with connection draining, before it stops
  (SIGTERM, then SIGKILL);
* health checks: ``EC2`` (the process is alive) and ``ELB`` (also the target groups' health,
  counted after the grace period); an unhealthy instance is terminated, then replaced;
* the default termination policy on scale-in: unprotected instances, those of the oldest
  launch template version first, then the oldest instance (AWS: the one closest to the next
  billing hour);
* lifecycle hooks (:mod:`tierlake.fleet.lifecycle`), default instance warmup, cooldown,
  instance refresh (:mod:`tierlake.fleet.refresh`), an activity history in AWS's wording
  (:mod:`tierlake.fleet.activity`), and the group's CloudWatch metrics
  (``AWS/AutoScaling`` Group*, ``AWS/EC2 CPUUtilization`` per instance and per group).

AWS documentation followed: "Auto Scaling groups", "Amazon EC2 Auto Scaling instance
lifecycle", "Health checks for instances in an Auto Scaling group", "Configure termination
policies", "Use instance scale-in protection", "Set the default instance warmup", "Scaling
cooldowns", the ``SetDesiredCapacity`` and ``DescribeAutoScalingGroups`` API references.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Literal, Protocol

import psutil
import structlog

from tierlake.edge.lb.model import Reason, TargetState
from tierlake.errors import TierlakeError
from tierlake.fleet import activity as act
from tierlake.fleet.activity import Activity, StatusCode
from tierlake.fleet.instance import COUNTED, GroupInstance, HealthStatus, LifecycleState
from tierlake.fleet.launch import LaunchTemplate, new_instance_id
from tierlake.fleet.lifecycle import (
    ABANDON,
    LAUNCHING,
    TERMINATING,
    LifecycleHook,
    LifecycleHooks,
    Notify,
)
from tierlake.fleet.process import Process, free_port
from tierlake.fleet.refresh import InstanceRefresh
from tierlake.ops.cloudwatch import MetricStore

log = structlog.get_logger(__name__)
HealthCheckType = Literal["EC2", "ELB"]
MAX_BACKOFF_SECONDS = 30.0
YOUNG_DEATH_SECONDS = 10.0  # an instance dead sooner counts as a failed launch


class AutoScalingError(TierlakeError, ValueError):
    """A request EC2 Auto Scaling would refuse; ``code`` is AWS's error code."""

    code = "ValidationError"


class ScalingActivityInProgressError(AutoScalingError):
    code = "ScalingActivityInProgress"


class TargetGroupLike(Protocol):
    """What a group needs of an ALB target group (``tierlake.edge.lb.targets.TargetGroup``)."""

    @property
    def name(self) -> str: ...

    def register(self, target_id: str, host: str, port: int, *,
                 weight: int = 1) -> object: ...

    async def deregister(self, target_id: str) -> None: ...

    def health(self, target_id: str) -> tuple[TargetState, Reason | None, str]: ...


class AutoScalingGroup:
    """An EC2 Auto Scaling group whose instances are processes of one launch template."""

    def __init__(self, name: str, template: LaunchTemplate, *, min_size: int, max_size: int,
                 desired_capacity: int | None = None,
                 target_groups: Sequence[TargetGroupLike] = (),
                 health_check_type: HealthCheckType = "EC2",
                 health_check_grace_period: float = 300.0,
                 default_instance_warmup: float = 0.0,
                 default_cooldown: float = 300.0,
                 metrics: MetricStore | None = None,
                 clock: Callable[[], float] = time.time,
                 check_interval: float = 0.5,
                 metrics_interval: float = 1.0,
                 stop_grace: float = 10.0,
                 max_activities: int = 200) -> None:
        desired = min_size if desired_capacity is None else desired_capacity
        _check_sizes(min_size, max_size, desired)
        if health_check_type not in ("EC2", "ELB"):
            raise AutoScalingError(f"HealthCheckType must be EC2 or ELB (got "
                                   f"{health_check_type!r})")
        if health_check_type == "ELB" and not target_groups:
            raise AutoScalingError(f"group {name}: the ELB health check type needs at least "
                                   "one target group")
        self.name, self.template = name, template
        self.min_size, self.max_size, self.desired_capacity = min_size, max_size, desired
        self.target_groups = list(target_groups)
        self.health_check_type: HealthCheckType = health_check_type
        self.health_check_grace_period = health_check_grace_period
        self.default_instance_warmup = default_instance_warmup
        self.default_cooldown = default_cooldown
        self.metrics = metrics if metrics is not None else MetricStore(clock=clock)
        self.clock = clock
        self.check_interval, self.metrics_interval = check_interval, metrics_interval
        self.stop_grace = stop_grace
        self.created_time = clock()
        self.instances: list[GroupInstance] = []
        self._activities: deque[Activity] = deque(maxlen=max_activities)
        self.lifecycle = LifecycleHooks(name, clock)
        self.cooldown_until = 0.0
        self.last_scaling_time = 0.0  # when the desired capacity last changed
        self.refresh: InstanceRefresh | None = None
        self.surge = 0  # extra capacity an instance refresh launches before terminating
        self._desired_cause: str | None = None
        self._replacements: deque[str] = deque()  # causes of launches owed
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._cpu: dict[str, tuple[psutil.Process, dict[int, psutil.Process]]] = {}
        self._last_metrics = 0.0
        self._stopping = False
        self._failures = 0  # launches that failed or died young, for the back-off
        self._launch_not_before = 0.0

    # -- lifecycle of the group ------------------------------------------------------------

    async def start(self) -> None:
        """Start keeping the desired capacity (launches begin at once)."""
        log.info("asg.start", group=self.name, desired=self.desired_capacity)
        self._loop_task = asyncio.create_task(self._run(), name=f"asg-{self.name}")

    async def stop(self) -> None:
        """Stop every instance: deregister (draining), SIGTERM, then SIGKILL after the grace."""
        self._stopping = True
        if self.refresh is not None:
            await self.refresh.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._tasks):  # launches still waiting: stop them now
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._shutdown(i) for i in self.instances),
                             return_exceptions=True)
        self.instances.clear()
        log.info("asg.stopped", group=self.name)

    async def _shutdown(self, inst: GroupInstance) -> None:
        if inst.registered:
            await self._deregister(inst)
        await inst.process.stop(self.stop_grace)
        inst.lifecycle_state = LifecycleState.TERMINATED

    async def _run(self) -> None:
        while not self._stopping:  # also ends a loop whose cancellation was lost
            try:
                self.check_health()
                self.reconcile()
                if self.clock() - self._last_metrics >= self.metrics_interval:
                    self.publish_metrics()
            except Exception:  # the loop keeps the group alive whatever one pass hits
                log.exception("asg.loop_failed", group=self.name)
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event is set, and stop() would wait forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_interval):
                    await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()

    # -- capacity --------------------------------------------------------------------------

    @property
    def activities(self) -> list[Activity]:
        """Newest first, as ``DescribeScalingActivities``."""
        return list(reversed(self._activities))

    def counted(self) -> list[GroupInstance]:
        """The instances that make the group's capacity (Pending and InService)."""
        return [i for i in self.instances if i.lifecycle_state in COUNTED]

    def in_service(self) -> list[GroupInstance]:
        return [i for i in self.instances if i.lifecycle_state == LifecycleState.IN_SERVICE]

    def warmed_up(self, inst: GroupInstance, warmup: float | None = None) -> bool:
        wait = self.default_instance_warmup if warmup is None else warmup
        return inst.in_service_time is not None and self.clock() - inst.in_service_time >= wait

    def healthy_in_service(self, warmup: float | None = None) -> list[GroupInstance]:
        """In service, Healthy, warmed up, and healthy in every target group."""
        return [i for i in self.in_service()
                if i.health_status == HealthStatus.HEALTHY and i.process.alive()
                and self.warmed_up(i, warmup)
                and all(tg.health(i.instance_id)[0] == TargetState.HEALTHY
                        for tg in self.target_groups)]

    def set_desired_capacity(self, desired: int, honor_cooldown: bool = False) -> None:
        """``SetDesiredCapacity``: refused outside min..max, or in cooldown when honoured."""
        if desired < self.min_size:
            raise AutoScalingError(f"New SetDesiredCapacity value {desired} is below min value "
                                   f"{self.min_size} for the AutoScalingGroup.")
        if desired > self.max_size:
            raise AutoScalingError(f"New SetDesiredCapacity value {desired} is above max value "
                                   f"{self.max_size} for the AutoScalingGroup.")
        now = self.clock()
        if honor_cooldown and now < self.cooldown_until:
            raise ScalingActivityInProgressError(
                f"the group {self.name} is in its cooldown period for another "
                f"{self.cooldown_until - now:.1f} s; retry then, or leave honor_cooldown off")
        self._change_desired(desired, act.user_set_desired_cause(
            now, self.desired_capacity, desired))

    def update(self, *, min_size: int | None = None, max_size: int | None = None,
               desired_capacity: int | None = None) -> None:
        """``UpdateAutoScalingGroup`` of the sizes; the desired capacity follows a new min or
        max it would fall outside of, as AWS does."""
        low = self.min_size if min_size is None else min_size
        high = self.max_size if max_size is None else max_size
        desired = self.desired_capacity if desired_capacity is None else desired_capacity
        if desired_capacity is None:
            desired = min(max(desired, low), high)
        _check_sizes(low, high, desired)
        old = self.desired_capacity
        self.min_size, self.max_size = low, high
        self._change_desired(desired, act.user_update_cause(self.clock(), low, high, desired,
                                                            old))

    def _change_desired(self, desired: int, cause: str) -> None:
        if desired != self.desired_capacity:
            log.info("asg.desired_capacity", group=self.name, old=self.desired_capacity,
                     new=desired)
            self._desired_cause = cause
            self.last_scaling_time = self.clock()
        self.desired_capacity = desired
        self.wake()

    def scale_by_policy(self, desired: int, *, alarm: str, policy: str,
                        cooldown: float | None = None) -> bool:
        """A scaling policy's change (clamped to min..max); True when it changed anything."""
        new = min(max(desired, self.min_size), self.max_size)
        if new == self.desired_capacity:
            return False
        now = self.clock()
        self._change_desired(new, act.alarm_cause(now, alarm, policy, self.desired_capacity,
                                                  new))
        if cooldown is not None:
            self.cooldown_until = now + cooldown
        return True

    def in_cooldown(self) -> bool:
        return self.clock() < self.cooldown_until

    def reconcile(self) -> None:
        """Launch or terminate to meet the desired capacity (plus a refresh's surge)."""
        if self._stopping:
            return
        target = self.desired_capacity + self.surge
        live = self.counted()
        now = self.clock()
        if len(live) < target and now < self._launch_not_before:
            pass  # backing off after failed launches
        elif len(live) < target:
            before = len(live)
            for k in range(target - before):
                why = self._replacements.popleft() if self._replacements else ""
                if why == "unhealthy":
                    cause = act.launch_for_unhealthy(now)
                elif why == "refresh":
                    cause = act.launch_for_refresh(now)
                else:
                    cause = act.join(self._desired_cause,
                                     act.launch_for_capacity(now, before + k, before + k + 1))
                self._launch(cause)
            self._desired_cause = None
        elif len(live) > target:
            victims = self.termination_order(live)[: len(live) - target]
            before = len(live)
            for k, inst in enumerate(victims):
                self._terminate(inst, act.join(self._desired_cause, act.terminate_for_capacity(
                    now, before - k, before - k - 1)))
            if victims:
                self._desired_cause = None
            elif live:
                log.info("asg.scale_in_blocked", group=self.name,
                         reason="every instance is protected from scale-in")
        else:
            self._desired_cause = None
            self._replacements.clear()

    def _launch_failed(self) -> None:
        """Back off before the next launch: 1, 2, 4 ... up to 30 s after failures in a row."""
        self._failures += 1
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(self._failures, 6))
        self._launch_not_before = self.clock() + delay
        log.warning("asg.launch_backoff", group=self.name, failures=self._failures,
                    retry_in_s=delay)

    def termination_order(self, candidates: Iterable[GroupInstance]) -> list[GroupInstance]:
        """AWS's default termination policy over the unprotected instances: oldest launch
        template version first, then the oldest instance. Pending ones go before any in
        service (they serve nothing yet)."""
        current = self.template.version
        return sorted((i for i in candidates if not i.protected_from_scale_in),
                      key=lambda i: (i.template.version == current, i.template.version,
                                     i.lifecycle_state == LifecycleState.IN_SERVICE,
                                     i.launch_time))

    # -- launching -------------------------------------------------------------------------

    def _record(self, description: str, cause: str, instance_id: str | None) -> Activity:
        a = Activity(self.name, description, cause, self.clock(), instance_id)
        self._activities.append(a)
        log.info("asg.activity", group=self.name, description=description, cause=cause)
        return a

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _launch(self, cause: str) -> GroupInstance:
        template = self.template
        port = free_port(template.host)
        iid = new_instance_id()
        inst = GroupInstance(iid, template, template.host, port,
                             Process(template.argv(port), template.env(port),
                                     name=f"{self.name}/{iid}"),
                             launch_time=self.clock())
        self.instances.append(inst)
        activity = self._record(f"Launching a new EC2 instance: {iid}", cause, iid)
        self._spawn(self._bring_up(inst, activity), f"launch-{iid}")
        return inst

    async def _bring_up(self, inst: GroupInstance, activity: Activity) -> None:
        try:
            await inst.process.start()
        except OSError as exc:
            inst.lifecycle_state = LifecycleState.TERMINATED
            self.instances.remove(inst)
            activity.finish(self.clock(), StatusCode.FAILED,
                            f"The instance could not be started: {exc}. Check the launch "
                            f"template {inst.template.label}'s command.")
            log.warning("asg.launch_failed", group=self.name, instance=inst.instance_id,
                        error=str(exc))
            self._launch_failed()
            return
        if self.lifecycle.has(LAUNCHING):
            inst.lifecycle_state = LifecycleState.PENDING_WAIT
            activity.status_code = StatusCode.MID_LIFECYCLE_ACTION
            activity.progress = 30
            result = await self.lifecycle.run(inst.instance_id, LAUNCHING)
            if result == ABANDON:
                activity.finish(self.clock(), StatusCode.CANCELLED,
                                "Instance failed to complete user's Lifecycle Action: "
                                "Lifecycle Action was abandoned with ABANDON Result")
                inst.lifecycle_state = LifecycleState.TERMINATING
                await inst.process.stop(self.stop_grace)
                inst.lifecycle_state = LifecycleState.TERMINATED
                self._forget(inst)
                return
        if inst.lifecycle_state not in COUNTED:  # terminated while it waited
            activity.finish(self.clock(), StatusCode.CANCELLED, "terminated while launching")
            return
        inst.lifecycle_state = LifecycleState.IN_SERVICE
        inst.in_service_time = self.clock()
        for tg in self.target_groups:
            tg.register(inst.instance_id, inst.host, inst.port)
        inst.registered = bool(self.target_groups)
        activity.finish(self.clock())
        log.info("asg.in_service", group=self.name, instance=inst.instance_id, port=inst.port,
                 pid=inst.process.pid)
        self.wake()

    # -- terminating -----------------------------------------------------------------------

    def _terminate(self, inst: GroupInstance, cause: str) -> None:
        inst.lifecycle_state = LifecycleState.TERMINATING
        activity = self._record(f"Terminating EC2 instance: {inst.instance_id}", cause,
                                inst.instance_id)
        self._spawn(self._take_down(inst, activity), f"terminate-{inst.instance_id}")

    async def _deregister(self, inst: GroupInstance) -> None:
        await asyncio.gather(*(tg.deregister(inst.instance_id) for tg in self.target_groups))
        inst.registered = False

    async def _take_down(self, inst: GroupInstance, activity: Activity) -> None:
        if inst.registered:
            activity.status_code = StatusCode.WAITING_FOR_ELB_CONNECTION_DRAINING
            activity.progress = 30
            await self._deregister(inst)
        if self.lifecycle.has(TERMINATING):
            inst.lifecycle_state = LifecycleState.TERMINATING_WAIT
            activity.status_code = StatusCode.MID_LIFECYCLE_ACTION
            activity.progress = 60
            await self.lifecycle.run(inst.instance_id, TERMINATING)
            inst.lifecycle_state = LifecycleState.TERMINATING
        await inst.process.stop(self.stop_grace)
        inst.lifecycle_state = LifecycleState.TERMINATED
        activity.finish(self.clock())
        self._forget(inst)
        self.wake()

    def _forget(self, inst: GroupInstance) -> None:
        with contextlib.suppress(ValueError):
            self.instances.remove(inst)
        self._cpu.pop(inst.instance_id, None)

    def get(self, instance_id: str) -> GroupInstance:
        for inst in self.instances:
            if inst.instance_id == instance_id:
                return inst
        raise AutoScalingError(f"The instance ID '{instance_id}' is not part of Auto Scaling "
                               f"group {self.name}; `tierlake fleet status` lists its "
                               "instances")

    def terminate_instance(self, instance_id: str,
                           should_decrement_desired_capacity: bool) -> Activity:
        """``TerminateInstanceInAutoScalingGroup``; without decrement a replacement follows."""
        inst = self.get(instance_id)
        if inst.lifecycle_state not in COUNTED:
            raise AutoScalingError(f"instance {instance_id} is already {inst.lifecycle_state}")
        old = self.desired_capacity
        new = old
        if should_decrement_desired_capacity:
            new = old - 1
            if new < self.min_size:
                raise AutoScalingError(
                    f"Currently, desiredSize equals minSize ({self.min_size}). Terminating "
                    f"instance without replacement will violate group's min size constraint. "
                    "Either set shouldDecrementDesiredCapacity flag to false or lower group's "
                    "min size.")
            self.desired_capacity = new
        now = self.clock()
        self._terminate(inst, act.terminate_for_user(now, instance_id, old, new))
        self.wake()
        return self._activities[-1]

    def set_instance_protection(self, instance_ids: Iterable[str], protected: bool) -> None:
        """``SetInstanceProtection``: protected instances are not chosen on scale-in."""
        found = [self.get(i) for i in instance_ids]
        for inst in found:
            inst.protected_from_scale_in = protected

    def set_instance_health(self, instance_id: str, health_status: str) -> None:
        """``SetInstanceHealth``: an Unhealthy instance is replaced at the next check."""
        self.get(instance_id).health_status = HealthStatus(health_status)
        self.wake()

    # -- health ----------------------------------------------------------------------------

    def check_health(self) -> None:
        """Mark dead (EC2) or ELB-unhealthy instances Unhealthy, then replace them."""
        now = self.clock()
        for inst in list(self.instances):
            if inst.lifecycle_state not in COUNTED:
                continue
            started = inst.process.proc is not None
            cause = None
            if started and not inst.process.alive():
                cause = act.terminate_for_ec2_health(now)
            elif (self.health_check_type == "ELB"
                  and inst.lifecycle_state == LifecycleState.IN_SERVICE
                  and now - inst.launch_time >= self.health_check_grace_period
                  and any(tg.health(inst.instance_id)[0] == TargetState.UNHEALTHY
                          for tg in self.target_groups)):
                cause = act.terminate_for_elb_health(now)
            elif inst.health_status == HealthStatus.UNHEALTHY:
                cause = act.terminate_for_ec2_health(now)
            if cause is None:
                if (self._failures and inst.in_service_time is not None
                        and now - inst.in_service_time >= YOUNG_DEATH_SECONDS):
                    self._failures = 0  # one lived: launches work again
                continue
            if started and not inst.process.alive() and (
                    inst.in_service_time is None
                    or now - inst.in_service_time < YOUNG_DEATH_SECONDS):
                self._launch_failed()  # died young: the command itself may be failing
            inst.health_status = HealthStatus.UNHEALTHY
            log.warning("asg.instance_unhealthy", group=self.name, instance=inst.instance_id,
                        cause=cause, code=inst.process.returncode)
            self._terminate(inst, cause)
            self._replacements.append("unhealthy")

    # -- lifecycle hooks -------------------------------------------------------------------

    def put_lifecycle_hook(self, name: str, transition: str, *, heartbeat_timeout: float = 3600.0,
                           default_result: str = ABANDON) -> LifecycleHook:
        hook = LifecycleHook(name, transition, heartbeat_timeout, default_result)
        self.lifecycle.put(hook)
        return hook

    def on_lifecycle_action(self, callback: Notify) -> None:
        self.lifecycle.on_action(callback)

    def complete_lifecycle_action(self, hook_name: str, instance_id: str, result: str,
                                  token: str | None = None) -> None:
        self.lifecycle.complete(hook_name, instance_id, result, token)

    def record_lifecycle_action_heartbeat(self, hook_name: str, instance_id: str,
                                          token: str | None = None) -> float:
        return self.lifecycle.heartbeat(hook_name, instance_id, token)

    # -- instance refresh ------------------------------------------------------------------

    def start_instance_refresh(self, *, min_healthy_percentage: float = 90.0,
                               instance_warmup: float | None = None,
                               template: LaunchTemplate | None = None) -> InstanceRefresh:
        """``StartInstanceRefresh`` (see :mod:`tierlake.fleet.refresh`)."""
        if self.refresh is not None and not self.refresh.done:
            raise AutoScalingError(f"An Instance Refresh is already in progress and blocks the "
                                   f"execution of this Instance Refresh (group {self.name}); "
                                   "cancel it first")
        refresh = InstanceRefresh(self, min_healthy_percentage, instance_warmup, template)
        try:
            refresh.start()
        except ValueError as exc:
            raise AutoScalingError(str(exc)) from exc
        self.refresh = refresh
        return refresh

    async def cancel_instance_refresh(self) -> None:
        if self.refresh is None or self.refresh.done:
            raise AutoScalingError(f"No in progress or pending Instance Refresh found for Auto "
                                   f"Scaling group {self.name}")
        await self.refresh.cancel()

    def add_surge(self) -> None:
        """One instance above the desired capacity, for a refresh that needs room."""
        if self.desired_capacity + self.surge < self.max_size:
            self.surge += 1
            self._replacements.append("refresh")
            self.wake()

    def clear_surge(self) -> None:
        self.surge = 0
        self.wake()

    def terminate_for_refresh(self, inst: GroupInstance) -> None:
        """Take an old instance out for a refresh (its replacement follows, or a surge
        instance already stands in for it)."""
        if self.surge > 0:
            self.surge -= 1
        else:
            self._replacements.append("refresh")
        self._terminate(inst, act.terminate_for_refresh(self.clock(), inst.instance_id))

    # -- metrics ---------------------------------------------------------------------------

    def _cpu_percent(self, inst: GroupInstance) -> float | None:
        """CPU of the process and its children, in percent of one core (an instance is one
        core here), capped at 100; None on the first sample or once gone."""
        pid = inst.process.pid
        if pid is None or not inst.process.alive():
            return None
        try:
            entry = self._cpu.get(inst.instance_id)
            if entry is None:
                main = psutil.Process(pid)
                main.cpu_percent(None)
                self._cpu[inst.instance_id] = (main, {})
                return None
            main, children = entry
            total = main.cpu_percent(None)
            for child in main.children(recursive=True):
                known = children.get(child.pid)
                if known is None:
                    children[child.pid] = child
                    child.cpu_percent(None)
                else:
                    total += known.cpu_percent(None)
        except psutil.Error:
            return None
        return min(100.0, total)

    def publish_metrics(self) -> None:
        """``AWS/AutoScaling`` group metrics and ``AWS/EC2 CPUUtilization``. A warming-up
        instance's CPU is left out of the group's aggregate, as AWS does."""
        self._last_metrics = self.clock()
        dims = {"AutoScalingGroupName": self.name}
        put = self.metrics.put
        states = [i.lifecycle_state for i in self.instances]
        for name, value in (
                ("GroupMinSize", self.min_size), ("GroupMaxSize", self.max_size),
                ("GroupDesiredCapacity", self.desired_capacity),
                ("GroupInServiceInstances", states.count(LifecycleState.IN_SERVICE)),
                ("GroupPendingInstances", states.count(LifecycleState.PENDING)
                 + states.count(LifecycleState.PENDING_WAIT)),
                ("GroupTerminatingInstances", states.count(LifecycleState.TERMINATING)
                 + states.count(LifecycleState.TERMINATING_WAIT)),
                ("GroupTotalInstances", len(states))):
            put("AWS/AutoScaling", name, float(value), dimensions=dims, unit="None")
        for inst in self.in_service():
            cpu = self._cpu_percent(inst)
            if cpu is None or not math.isfinite(cpu):
                continue
            put("AWS/EC2", "CPUUtilization", cpu, dimensions={"InstanceId": inst.instance_id},
                unit="Percent")
            if self.warmed_up(inst):
                put("AWS/EC2", "CPUUtilization", cpu, dimensions=dims, unit="Percent")

    # -- description -----------------------------------------------------------------------

    def describe_instance(self, inst: GroupInstance) -> dict[str, object]:
        d = inst.describe()
        d["WarmedUp"] = self.warmed_up(inst)
        d["TargetHealth"] = ({tg.name: str(tg.health(inst.instance_id)[0])
                              for tg in self.target_groups} if inst.registered else {})
        return d

    def describe(self) -> dict[str, object]:
        """The group as ``DescribeAutoScalingGroups`` shows it."""
        d: dict[str, object] = {
            "AutoScalingGroupName": self.name,
            "LaunchTemplate": {"LaunchTemplateName": self.template.name,
                               "Version": str(self.template.version)},
            "MinSize": self.min_size, "MaxSize": self.max_size,
            "DesiredCapacity": self.desired_capacity,
            "DefaultCooldown": self.default_cooldown,
            "HealthCheckType": self.health_check_type,
            "HealthCheckGracePeriod": self.health_check_grace_period,
            "DefaultInstanceWarmup": self.default_instance_warmup,
            "TargetGroupARNs": [tg.name for tg in self.target_groups],
            "CreatedTime": act.aws_time(self.created_time),
            "Instances": [self.describe_instance(i) for i in self.instances],
            "LifecycleHooks": [{"LifecycleHookName": h.name, "LifecycleTransition": h.transition,
                                "HeartbeatTimeout": h.heartbeat_timeout,
                                "DefaultResult": h.default_result}
                               for h in self.lifecycle.hooks.values()],
        }
        if self.refresh is not None:
            d["InstanceRefresh"] = self.refresh.describe()
        return d


def _check_sizes(min_size: int, max_size: int, desired: int) -> None:
    if min_size < 0 or max_size < 0:
        raise AutoScalingError("MinSize and MaxSize must be 0 or more")
    if min_size > max_size:
        raise AutoScalingError(f"Max bound, {max_size}, must be greater than or equal to min "
                               f"bound, {min_size}")
    if not min_size <= desired <= max_size:
        raise AutoScalingError(f"Desired capacity:{desired} must be between the specified min "
                               f"size:{min_size} and max size:{max_size}")
