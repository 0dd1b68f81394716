"""ELB health checks replace an instance its target group finds unhealthy (a real
TargetGroup checking real processes); lifecycle hooks hold instances in Pending:Wait and
Terminating:Wait until completed, heartbeated or timed out."""

from __future__ import annotations

import re

import pytest
from fleet_helpers import fast_target_group, get, in_service, server_template, until

from tierlake.edge.lb.model import TargetState
from tierlake.fleet.activity import StatusCode
from tierlake.fleet.asg import AutoScalingGroup
from tierlake.fleet.instance import LifecycleState
from tierlake.fleet.lifecycle import LAUNCHING, TERMINATING, LifecycleAction, LifecycleError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


async def test_an_instance_unhealthy_in_its_target_group_is_replaced() -> None:
    tg = fast_target_group()
    await tg.start()
    group = AutoScalingGroup("app", server_template(), min_size=2, max_size=3,
                             target_groups=[tg], health_check_type="ELB",
                             health_check_grace_period=0.5, check_interval=0.1, stop_grace=2.0)
    await group.start()
    changes: list[tuple[str, TargetState]] = []
    tg.on_change(lambda target, old, new: changes.append((target.id, new)))
    try:
        await until(lambda: tg.healthy_count == 2, what="two healthy targets")
        sick = in_service(group)[0]
        assert (await get(sick.host, sick.port, "/fail"))[0] == 200
        # (the group may replace it before a poll of health() would see it unhealthy)
        await until(lambda: (sick.instance_id, TargetState.UNHEALTHY) in changes,
                    what="the target group finds it unhealthy")
        await until(lambda: sick not in group.instances and tg.healthy_count == 2
                    and len(in_service(group)) == 2, what="replaced by a healthy instance")
        assert tg.health(sick.instance_id)[0] == TargetState.UNUSED  # deregistered
        taken = next(a for a in group.activities if a.instance_id == sick.instance_id)
        assert re.fullmatch(f"At {ISO} an instance was taken out of service in response to an "
                            "ELB system health check failure.", taken.cause)
        assert group.describe_instance(in_service(group)[0])["TargetHealth"] == {
            "app-tg": "healthy"}
    finally:
        await group.stop()
        await tg.stop()


async def test_no_elb_replacement_within_the_grace_period() -> None:
    tg = fast_target_group()
    await tg.start()
    group = AutoScalingGroup("app", server_template(), min_size=1, max_size=1,
                             target_groups=[tg], health_check_type="ELB",
                             health_check_grace_period=3600, check_interval=0.1)
    await group.start()
    try:
        await until(lambda: tg.healthy_count == 1)
        inst = in_service(group)[0]
        await get(inst.host, inst.port, "/fail")
        await until(lambda: tg.health(inst.instance_id)[0] == TargetState.UNHEALTHY)
        for _ in range(5):
            group.check_health()
        assert group.instances == [inst] and inst.lifecycle_state == LifecycleState.IN_SERVICE
    finally:
        await group.stop()
        await tg.stop()


async def test_launching_hook_holds_until_completed_and_abandon_terminates() -> None:
    tg = fast_target_group()
    await tg.start()
    group = AutoScalingGroup("app", server_template(), min_size=1, max_size=2,
                             target_groups=[tg], check_interval=0.1, stop_grace=2.0)
    group.put_lifecycle_hook("wait-for-warm", LAUNCHING, heartbeat_timeout=60,
                             default_result="ABANDON")
    seen: list[LifecycleAction] = []
    group.on_lifecycle_action(seen.append)
    await group.start()
    try:
        await until(lambda: len(seen) == 1, what="a launching lifecycle action")
        first = group.get(seen[0].instance_id)
        assert first.lifecycle_state == LifecycleState.PENDING_WAIT
        assert group.activities[0].status_code == StatusCode.MID_LIFECYCLE_ACTION
        assert tg.health(first.instance_id)[0] == TargetState.UNUSED  # not registered yet
        with pytest.raises(LifecycleError, match="No active Lifecycle Action found"):
            group.complete_lifecycle_action("wait-for-warm", first.instance_id, "CONTINUE",
                                            token="not-the-token")
        group.complete_lifecycle_action("wait-for-warm", first.instance_id, "CONTINUE",
                                        token=seen[0].token)
        await until(lambda: first.lifecycle_state == LifecycleState.IN_SERVICE)
        await until(lambda: tg.healthy_count == 1, what="registered once in service")
        # a second instance abandoned: terminated, and the group launches another
        group.set_desired_capacity(2)
        await until(lambda: len(seen) == 2)
        second = group.get(seen[1].instance_id)
        group.complete_lifecycle_action("wait-for-warm", second.instance_id, "ABANDON")
        await until(lambda: second not in group.instances, what="abandoned instance gone")
        assert second.lifecycle_state == LifecycleState.TERMINATED
        assert not second.process.alive()
        await until(lambda: len(seen) == 3, what="a new launch after the abandoned one")
        abandoned = next(a for a in group.activities if a.instance_id == second.instance_id)
        assert abandoned.status_code == StatusCode.CANCELLED
        assert "ABANDON" in abandoned.status_message
    finally:
        await group.stop()
        await tg.stop()


async def test_heartbeat_extends_and_the_default_result_applies_on_timeout() -> None:
    group = AutoScalingGroup("app", server_template(), min_size=1, max_size=1,
                             check_interval=0.1, stop_grace=2.0)
    group.put_lifecycle_hook("slow", LAUNCHING, heartbeat_timeout=0.6, default_result="CONTINUE")
    group.put_lifecycle_hook("drain-logs", TERMINATING, heartbeat_timeout=0.6,
                             default_result="ABANDON")
    seen: list[LifecycleAction] = []
    group.on_lifecycle_action(seen.append)
    await group.start()
    try:
        await until(lambda: len(seen) == 1)
        inst = group.get(seen[0].instance_id)
        first_deadline = seen[0].deadline
        new_deadline = group.record_lifecycle_action_heartbeat("slow", inst.instance_id)
        assert new_deadline >= first_deadline
        # the default result CONTINUE applies once the heartbeat timeout passes
        await until(lambda: inst.lifecycle_state == LifecycleState.IN_SERVICE, timeout=10,
                    what="CONTINUE by default after the heartbeat timeout")
        group.terminate_instance(inst.instance_id, should_decrement_desired_capacity=False)
        await until(lambda: inst.lifecycle_state == LifecycleState.TERMINATING_WAIT)
        assert inst.process.alive(), "the process runs while the terminating hook waits"
        await until(lambda: inst.lifecycle_state == LifecycleState.TERMINATED, timeout=10,
                    what="terminated after the terminating hook's timeout")
        assert not inst.process.alive()
    finally:
        await group.stop()
