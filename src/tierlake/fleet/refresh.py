"""Instance refresh: replace a group's instances in batches, never below a healthy floor.

Modelled on EC2 Auto Scaling's ``StartInstanceRefresh`` / ``CancelInstanceRefresh`` /
``DescribeInstanceRefreshes``: every instance in the group when the refresh starts is
replaced by one of the (new) launch template. ``MinHealthyPercentage`` (default 90) of the
desired capacity stays healthy and in service the whole time: an old instance is taken out
only while the count of healthy, warmed-up instances (healthy in every target group too)
stays at or above that floor; when none can go, one extra instance is launched first (up to
``max_size``, as AWS does with a ``MaxHealthyPercentage`` above 100) and an old one goes
once it is healthy and its instance warmup has passed. Taking an instance out deregisters
it and waits for connection draining before the process stops, so no request fails.
Status ``Pending``, ``InProgress``, ``Successful``, ``Failed``, ``Cancelling``,
``Cancelled``, and ``PercentageComplete``. See "Use an instance refresh to update instances
in an Auto Scaling group" (EC2 Auto Scaling User Guide).
"""

from __future__ import annotations

import asyncio
import enum
import math
import uuid
from collections.abc import Callable
from typing import Protocol

import structlog

from tierlake.fleet.activity import aws_time
from tierlake.fleet.instance import GroupInstance
from tierlake.fleet.launch import LaunchTemplate

log = structlog.get_logger(__name__)


class RefreshStatus(enum.StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"


class RefreshableGroup(Protocol):
    """What a refresh needs of its Auto Scaling group."""

    name: str
    template: LaunchTemplate
    desired_capacity: int
    max_size: int
    default_instance_warmup: float
    instances: list[GroupInstance]
    clock: Callable[[], float]
    check_interval: float

    def healthy_in_service(self, warmup: float | None = None) -> list[GroupInstance]: ...

    def warmed_up(self, inst: GroupInstance, warmup: float | None = None) -> bool: ...

    def add_surge(self) -> None: ...

    def clear_surge(self) -> None: ...

    def terminate_for_refresh(self, inst: GroupInstance) -> None: ...


class InstanceRefresh:
    """One rolling replacement of a group's instances."""

    def __init__(self, group: RefreshableGroup, min_healthy_percentage: float = 90.0,
                 instance_warmup: float | None = None,
                 template: LaunchTemplate | None = None) -> None:
        if not 0 <= min_healthy_percentage <= 100:
            raise ValueError(f"MinHealthyPercentage must be between 0 and 100 (got "
                             f"{min_healthy_percentage})")
        self.group = group
        self.min_healthy_percentage = min_healthy_percentage
        self.instance_warmup = (group.default_instance_warmup if instance_warmup is None
                                else instance_warmup)
        self.template = template
        self.refresh_id = str(uuid.uuid4())
        self.status = RefreshStatus.PENDING
        self.status_reason = ""
        self.start_time = group.clock()
        self.end_time: float | None = None
        self.to_replace: set[str] = set()
        self.total = 0
        self.percentage_complete = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self.status in (RefreshStatus.SUCCESSFUL, RefreshStatus.FAILED,
                               RefreshStatus.CANCELLED)

    @property
    def active(self) -> bool:
        return not self.done

    def min_healthy(self) -> int:
        return math.ceil(self.group.desired_capacity * self.min_healthy_percentage / 100.0)

    def start(self) -> None:
        g = self.group
        if self.min_healthy() >= g.desired_capacity >= g.max_size > 0:
            raise ValueError(
                f"group {g.name}: keeping {self.min_healthy_percentage:g}% of "
                f"{g.desired_capacity} instances healthy needs room for one more; raise "
                f"max_size above {g.max_size} or lower min_healthy_percentage")
        if self.template is not None:
            g.template = self.template  # new launches use the new version from now on
        self.to_replace = {i.instance_id for i in g.instances if i.counted}
        self.total = len(self.to_replace)
        self._task = asyncio.create_task(self._run(), name=f"refresh-{g.name}")

    async def wait(self) -> RefreshStatus:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        return self.status

    async def cancel(self) -> None:
        if self.done:
            return
        self.status = RefreshStatus.CANCELLING
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.group.clear_surge()
        self._finish(RefreshStatus.CANCELLED, "Cancelled by a user request.")

    def _finish(self, status: RefreshStatus, reason: str) -> None:
        self.status, self.status_reason = status, reason
        self.end_time = self.group.clock()
        log.info("asg.instance_refresh", group=self.group.name, refresh=self.refresh_id,
                 status=str(status), reason=reason)

    async def _run(self) -> None:
        g = self.group
        self.status = RefreshStatus.IN_PROGRESS
        log.info("asg.instance_refresh", group=g.name, refresh=self.refresh_id,
                 status=str(self.status), instances=self.total,
                 min_healthy=self.min_healthy())
        try:
            while True:
                old = [i for i in g.instances if i.instance_id in self.to_replace and i.counted]
                # the old instances serve already; a new one counts once warmed up
                healthy = [i for i in g.healthy_in_service(0.0)
                           if i.instance_id in self.to_replace
                           or g.warmed_up(i, self.instance_warmup)]
                self.percentage_complete = (100 if not self.total else
                                            int(100 * (self.total - len(old)) / self.total))
                if not old:
                    if len(healthy) >= g.desired_capacity:
                        self._finish(RefreshStatus.SUCCESSFUL, "")
                        return
                else:
                    self._step(old, healthy)
                await asyncio.sleep(g.check_interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a refresh that breaks says why in its status
            log.exception("asg.instance_refresh_failed", group=g.name)
            g.clear_surge()
            self._finish(RefreshStatus.FAILED, f"The instance refresh failed: {exc}")

    def _step(self, old: list[GroupInstance], healthy: list[GroupInstance]) -> None:
        g = self.group
        healthy_ids = {i.instance_id for i in healthy}
        room = len(healthy) - self.min_healthy()
        took = 0
        # old instances that are not healthy cost nothing to take out; healthy ones cost one
        # each, oldest first
        for inst in sorted(old, key=lambda i: (i.instance_id in healthy_ids, i.launch_time)):
            if inst.instance_id in healthy_ids:
                if room < 1:
                    break
                room -= 1
            g.terminate_for_refresh(inst)
            took += 1
        waiting = [i for i in g.instances if i.counted and i.instance_id not in self.to_replace
                   and i.instance_id not in healthy_ids]
        if not took and not waiting:
            g.add_surge()  # launch one first: nothing can go without breaking the floor

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            "InstanceRefreshId": self.refresh_id, "AutoScalingGroupName": self.group.name,
            "Status": str(self.status), "StatusReason": self.status_reason,
            "StartTime": aws_time(self.start_time),
            "PercentageComplete": self.percentage_complete,
            "InstancesToUpdate": len([i for i in self.group.instances
                                      if i.instance_id in self.to_replace and i.counted]),
            "Preferences": {"MinHealthyPercentage": self.min_healthy_percentage,
                            "InstanceWarmup": self.instance_warmup},
        }
        if self.end_time is not None:
            d["EndTime"] = aws_time(self.end_time)
        return d
