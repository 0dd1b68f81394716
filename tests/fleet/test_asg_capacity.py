"""Auto Scaling groups of real processes: desired capacity kept, dead instances replaced,
AWS's size errors, the default termination policy, scale-in protection, the activity
history's wording."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest
from fleet_helpers import answers, in_service, pid_alive, template, until

from tierlake.fleet.activity import StatusCode
from tierlake.fleet.asg import AutoScalingError, AutoScalingGroup
from tierlake.fleet.instance import HealthStatus

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _group(**kw: object) -> AutoScalingGroup:
    args: dict[str, object] = dict(min_size=1, max_size=4, desired_capacity=2,
                                   check_interval=0.1, stop_grace=2.0)
    args.update(kw)
    return AutoScalingGroup("web", template(), **args)  # type: ignore[arg-type]


async def test_desired_capacity_kept_and_a_killed_instance_replaced() -> None:
    group = _group()
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 2, what="two instances in service")
        first = list(in_service(group))
        assert all([await answers(i) for i in first]), "each instance serves on its port"
        assert all(re.fullmatch(r"i-[0-9a-f]{17}", i.instance_id) for i in first)
        victim = first[0]
        assert victim.process.pid is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        await until(lambda: victim not in group.instances and len(in_service(group)) == 2,
                    what="the killed instance replaced")
        newest = group.activities[0]
        assert newest.description.startswith("Launching a new EC2 instance: i-")
        assert re.fullmatch(f"At {ISO} an instance was launched in response to an unhealthy "
                            "instance needing to be replaced.", newest.cause)
        taken = next(a for a in group.activities if a.instance_id == victim.instance_id
                     and a.description.startswith("Terminating"))
        assert re.fullmatch(f"At {ISO} an instance was taken out of service in response to an "
                            "EC2 health check indicating it has been terminated or stopped.",
                            taken.cause)
        assert taken.status_code == StatusCode.SUCCESSFUL
    finally:
        await group.stop()
    assert not any(pid_alive(i.process.pid or 0) for i in first)


async def test_scaling_by_hand_and_the_wording_of_its_activities() -> None:
    group = _group()
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 2)
        group.update(min_size=2, max_size=4, desired_capacity=3)
        await until(lambda: len(in_service(group)) == 3, what="scaled out to 3")
        launch = group.activities[0]
        assert re.fullmatch(
            f"At {ISO} a user request update of AutoScalingGroup constraints to min: 2, max: 4, "
            f"desired: 3 changing the desired capacity from 2 to 3.  At {ISO} an instance was "
            "started in response to a difference between desired and actual capacity, "
            "increasing the capacity from 2 to 3.", launch.cause), launch.cause
        assert launch.to_dict()["StatusCode"] == "Successful"
        group.set_desired_capacity(2)
        await until(lambda: len(group.instances) == 2, what="scaled in to 2")
        term = group.activities[0]
        assert term.description.startswith("Terminating EC2 instance: ")
        assert re.fullmatch(
            f"At {ISO} a user request explicitly set group desired capacity changing the "
            f"desired capacity from 3 to 2.  At {ISO} an instance was taken out of service in "
            "response to a difference between desired and actual capacity, shrinking the "
            "capacity from 3 to 2.", term.cause), term.cause
        described = group.describe()
        assert described["DesiredCapacity"] == 2 and described["MinSize"] == 2
        assert {i["LifecycleState"] for i in described["Instances"]} == {"InService"}  # type: ignore[union-attr, index]
    finally:
        await group.stop()


def test_sizes_outside_min_and_max_are_refused_in_aws_words() -> None:
    group = _group(min_size=2, max_size=4, desired_capacity=2)
    with pytest.raises(AutoScalingError, match=r"^New SetDesiredCapacity value 5 is above max "
                       r"value 4 for the AutoScalingGroup\.$"):
        group.set_desired_capacity(5)
    with pytest.raises(AutoScalingError, match=r"^New SetDesiredCapacity value 1 is below min "
                       r"value 2 for the AutoScalingGroup\.$"):
        group.set_desired_capacity(1)
    with pytest.raises(AutoScalingError, match="Desired capacity:5 must be between the "
                       "specified min size:1 and max size:4"):
        _group(min_size=1, max_size=4, desired_capacity=5)
    with pytest.raises(AutoScalingError, match="ELB health check type needs at least one "
                       "target group"):
        _group(health_check_type="ELB")
    assert group.desired_capacity == 2


async def test_termination_policy_and_scale_in_protection() -> None:
    group = _group(min_size=0, desired_capacity=3)
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 3)
        by_age = sorted(group.instances, key=lambda i: i.launch_time)
        # a new template version: the old version's instances go first, oldest first
        group.template = group.template.new_version()
        group.set_desired_capacity(4)
        await until(lambda: len(in_service(group)) == 4)
        new = next(i for i in group.instances if i.template.version == 2)
        group.set_instance_protection([by_age[0].instance_id], True)
        group.set_desired_capacity(2)
        await until(lambda: len(group.instances) == 2, what="scaled in to 2")
        assert {i.instance_id for i in group.instances} == {by_age[0].instance_id,
                                                            new.instance_id}
        # the last unprotected one goes; the protected one stays even below desired
        group.set_desired_capacity(0)
        await until(lambda: len(group.instances) == 1, what="scaled in to the protected one")
        await asyncio.sleep(0.5)
        assert [i.instance_id for i in group.instances] == [by_age[0].instance_id]
        group.set_instance_protection([by_age[0].instance_id], False)
        await until(lambda: not group.instances, what="scaled in to 0")
        with pytest.raises(AutoScalingError, match="is not part of Auto Scaling group web"):
            group.set_instance_protection(["i-00000000000000000"], True)
    finally:
        await group.stop()


async def test_terminate_instance_with_and_without_decrement() -> None:
    group = _group(min_size=1, desired_capacity=2)
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 2)
        a, b = in_service(group)
        activity = group.terminate_instance(a.instance_id, should_decrement_desired_capacity=True)
        assert re.fullmatch(f"At {ISO} instance {a.instance_id} was taken out of service in "
                            "response to a user request, shrinking the capacity from 2 to 1.",
                            activity.cause)
        await until(lambda: len(group.instances) == 1)
        assert group.desired_capacity == 1
        with pytest.raises(AutoScalingError, match="min size constraint"):
            group.terminate_instance(b.instance_id, should_decrement_desired_capacity=True)
        group.terminate_instance(b.instance_id, should_decrement_desired_capacity=False)
        await until(lambda: b not in group.instances and len(in_service(group)) == 1,
                    what="replaced after a terminate without decrement")
        group.set_instance_health(in_service(group)[0].instance_id, "Unhealthy")
        assert group.instances[0].health_status == HealthStatus.UNHEALTHY
        await until(lambda: len(in_service(group)) == 1
                    and in_service(group)[0].health_status == HealthStatus.HEALTHY,
                    what="an instance set Unhealthy replaced")
    finally:
        await group.stop()


async def test_a_command_that_cannot_start_fails_its_activity() -> None:
    from tierlake.fleet.launch import LaunchTemplate

    group = AutoScalingGroup("bad", LaunchTemplate("bad", ("/nonexistent/prog", "{port}")),
                             min_size=1, max_size=1, check_interval=0.1)
    await group.start()
    try:
        await until(lambda: any(a.status_code == StatusCode.FAILED for a in group.activities),
                    what="a failed launch activity")
        failed = next(a for a in group.activities if a.status_code == StatusCode.FAILED)
        assert "could not be started" in failed.status_message
        assert "bad:1" in failed.status_message
    finally:
        await group.stop()
