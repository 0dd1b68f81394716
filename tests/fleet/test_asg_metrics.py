"""The group's CloudWatch metrics: AWS/AutoScaling Group* and AWS/EC2 CPUUtilization per
instance and per group, measured with psutil on real processes."""

from __future__ import annotations

import sys

import pytest
from fleet_helpers import in_service, until

from tierlake.fleet.asg import AutoScalingGroup
from tierlake.fleet.launch import LaunchTemplate
from tierlake.ops.cloudwatch import MetricStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
BUSY = LaunchTemplate("busy", (sys.executable, "-c", "while True: pass", "{port}"))


async def test_group_and_cpu_metrics() -> None:
    store = MetricStore(resolution_seconds=0.1)
    group = AutoScalingGroup("busy", BUSY, min_size=1, max_size=2, metrics=store,
                             check_interval=0.1, metrics_interval=0.2, stop_grace=2.0)
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 1)
        iid = in_service(group)[0].instance_id

        def series(name: str, dims: dict[str, str]) -> list[float]:
            now = store.clock()
            return [d.value for d in store.statistics(
                "AWS/EC2" if name == "CPUUtilization" else "AWS/AutoScaling", name, dims,
                period=0.1, start=now - 60, end=now + 1, stat="Maximum")]

        await until(lambda: len(series("CPUUtilization", {"InstanceId": iid})) >= 5,
                    what="five CPU samples of the instance")
        assert max(series("CPUUtilization", {"InstanceId": iid})) > 10.0, \
            "a busy loop shows as CPU"
        assert series("CPUUtilization", {"AutoScalingGroupName": "busy"}), \
            "warmed-up instances count towards the group's CPU"
        group_dims = {"AutoScalingGroupName": "busy"}
        assert series("GroupDesiredCapacity", group_dims)[-1] == 1
        await until(lambda: series("GroupInServiceInstances", group_dims)[-1] == 1)
        units = {(s.namespace, s.name): s.unit for s in store.series()}
        assert units[("AWS/EC2", "CPUUtilization")] == "Percent"
    finally:
        await group.stop()
