"""Scaling policies: target tracking scales a group of real processes out on its high alarm
and back in after its low alarm; step and simple scaling with adjustment types, bounds,
MinAdjustmentMagnitude and cooldown (on an injected clock)."""

from __future__ import annotations

import asyncio
import re

import pytest
from fleet_helpers import in_service, template, until

from tierlake.fleet.asg import AutoScalingError, AutoScalingGroup, ScalingActivityInProgressError
from tierlake.fleet.policies import (
    SimpleScalingPolicy,
    StepAdjustment,
    StepScalingPolicy,
    TargetTrackingPolicy,
    percent_change,
)
from tierlake.ops.cloudwatch import Alarm, AlarmState, MetricStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
T0 = 1_796_112_000.0
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


async def test_target_tracking_scales_out_then_in() -> None:
    store = MetricStore(resolution_seconds=0.05)
    group = AutoScalingGroup("app", template(), min_size=1, max_size=4, desired_capacity=1,
                             metrics=store, default_instance_warmup=0.3, check_interval=0.1,
                             metrics_interval=3600, stop_grace=2.0)
    policy = TargetTrackingPolicy(group, "app-cpu", "ASGAverageCPUUtilization", 50.0,
                                  period=0.2)
    policy.attach()
    high, low = policy.alarms
    assert re.fullmatch(r"TargetTracking-app-AlarmHigh-[0-9a-f-]{36}", high.name)
    assert re.fullmatch(r"TargetTracking-app-AlarmLow-[0-9a-f-]{36}", low.name)
    assert (low.threshold, low.evaluation_periods, high.evaluation_periods) == (45.0, 15, 3)
    load = {"total": 100.0}  # CPU of the whole load; each warmed-up instance takes a share

    async def feed() -> None:
        while True:
            warm = [i for i in in_service(group) if group.warmed_up(i)]
            store.put("AWS/EC2", "CPUUtilization", load["total"] / max(1, len(warm)),
                      dimensions={"AutoScalingGroupName": "app"}, unit="Percent")
            await asyncio.sleep(0.02)

    await group.start()
    feeder = asyncio.create_task(feed())
    evaluator = asyncio.create_task(store.run_alarms(0.2))
    try:
        await until(lambda: group.desired_capacity == 2, what="scaled out on the high alarm")
        await until(lambda: any("monitor alarm" in a.cause for a in group.activities),
                    what="the launch the alarm caused")
        out = next(a for a in group.activities if a.description.startswith("Launching")
                   and "monitor alarm" in a.cause)
        assert re.fullmatch(
            f"At {ISO} a monitor alarm {high.name} in state ALARM triggered policy app-cpu "
            f"changing the desired capacity from 1 to 2.  At {ISO} an instance was started in "
            "response to a difference between desired and actual capacity, increasing the "
            "capacity from 1 to 2.", out.cause), out.cause
        await until(lambda: len([i for i in in_service(group) if group.warmed_up(i)]) == 2)
        # 100 over two instances is 50: at the target, no further scale-out
        await asyncio.sleep(1.0)
        assert group.desired_capacity == 2
        load["total"] = 10.0
        await until(lambda: group.desired_capacity == 1, timeout=20,
                    what="scaled in after 15 low periods")
        assert low.state == AlarmState.ALARM
        await until(lambda: any(a.description.startswith("Terminating")
                                for a in group.activities), what="the scale-in activity")
        scale_in = next(a for a in group.activities if a.description.startswith("Terminating"))
        assert f"a monitor alarm {low.name} in state ALARM triggered policy app-cpu changing " \
               "the desired capacity from 2 to 1." in scale_in.cause
        await until(lambda: len(group.instances) == 1)
    finally:
        feeder.cancel()
        evaluator.cancel()
        await asyncio.gather(feeder, evaluator, return_exceptions=True)
        await group.stop()


def test_disable_scale_in_creates_only_the_high_alarm_and_label_is_required() -> None:
    group = AutoScalingGroup("app", template(), min_size=1, max_size=4)
    policy = TargetTrackingPolicy(group, "p", "ALBRequestCountPerTarget", 50,
                                  resource_label="app-tg", disable_scale_in=True)
    policy.attach()
    assert [a.name.split("-")[2] for a in policy.alarms] == ["AlarmHigh"]
    (alarm,) = policy.alarms
    assert (alarm.namespace, alarm.metric_name, alarm.statistic, alarm.dimensions) == (
        "AWS/ApplicationELB", "RequestCountPerTarget", "Sum", {"TargetGroup": "app-tg"})
    assert alarm.name in group.metrics.alarms
    policy.detach()
    assert not group.metrics.alarms
    with pytest.raises(AutoScalingError, match="needs a resource_label"):
        TargetTrackingPolicy(group, "p", "ALBRequestCountPerTarget", 50)
    with pytest.raises(AutoScalingError, match="unknown predefined metric"):
        TargetTrackingPolicy(group, "p", "ASGAverageNetworkIn", 50)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _queue(store: MetricStore, value: float, at: float) -> None:
    store.put("Custom", "QueueDepth", value, dimensions={"Queue": "orders"}, timestamp=at)


async def test_step_scaling_with_cooldown() -> None:
    clock = Clock()
    store = MetricStore(clock=clock)
    group = AutoScalingGroup("app", template(), min_size=1, max_size=10, desired_capacity=2,
                             metrics=store, clock=clock, default_cooldown=300)
    alarm = store.put_metric_alarm(Alarm(
        name="queue-deep", namespace="Custom", metric_name="QueueDepth",
        dimensions={"Queue": "orders"}, threshold=10, comparison_operator="GreaterThanThreshold",
        period=60, evaluation_periods=1))
    policy = StepScalingPolicy(group, "queue-steps", adjustment_type="ChangeInCapacity",
                               step_adjustments=[StepAdjustment(1, 0, 10),
                                                 StepAdjustment(3, 10, None)])
    policy.attach(alarm)
    _queue(store, 15, T0 + 1)  # breach 5: first step
    clock.t = T0 + 60
    await store.evaluate_alarms()
    assert alarm.state == AlarmState.ALARM and group.desired_capacity == 3
    assert re.search(r"a monitor alarm queue-deep in state ALARM triggered policy queue-steps "
                     "changing the desired capacity from 2 to 3.", group._desired_cause or "")
    with pytest.raises(ScalingActivityInProgressError, match="cooldown"):
        group.set_desired_capacity(4, honor_cooldown=True)
    _queue(store, 30, T0 + 61)  # breach 20: second step, but in cooldown
    clock.t = T0 + 120
    await store.evaluate_alarms()
    assert group.desired_capacity == 3
    _queue(store, 30, T0 + 361)
    clock.t = T0 + 420  # cooldown over
    await store.evaluate_alarms()
    assert group.desired_capacity == 6
    _queue(store, 50, T0 + 421)
    clock.t = T0 + 480
    await store.evaluate_alarms()  # in cooldown again
    assert group.desired_capacity == 6
    clock.t = T0 + 800
    _queue(store, 90, T0 + 741)
    await store.evaluate_alarms()
    assert group.desired_capacity == 9
    clock.t = T0 + 1200
    _queue(store, 90, T0 + 1141)
    await store.evaluate_alarms()
    assert group.desired_capacity == 10  # clamped at max_size


def test_adjustment_types_and_min_adjustment_magnitude() -> None:
    group = AutoScalingGroup("app", template(), min_size=1, max_size=20, desired_capacity=6)
    percent = StepScalingPolicy(group, "pct", adjustment_type="PercentChangeInCapacity",
                                step_adjustments=[StepAdjustment(10, 0, None),
                                                  StepAdjustment(-50, None, 0)],
                                min_adjustment_magnitude=2)
    assert percent.new_capacity(5.0) == 8  # 10% of 6 is 0.6 -> 1 -> at least 2
    assert percent.new_capacity(-5.0) == 3  # -50% of 6 is -3
    exact = SimpleScalingPolicy(group, "exact", adjustment_type="ExactCapacity",
                                scaling_adjustment=4, cooldown=10)
    assert exact.new_capacity(123.0) == 4 and exact.cooldown == 10
    assert [percent_change(10, p) for p in (25, 5, -5, -25, 0)] == [2, 1, -1, -2, 0]
    with pytest.raises(AutoScalingError, match="step adjustments overlap"):
        StepScalingPolicy(group, "bad", adjustment_type="ChangeInCapacity",
                          step_adjustments=[StepAdjustment(1, 0, 10), StepAdjustment(2, 5, None)])
    with pytest.raises(AutoScalingError, match="MinAdjustmentMagnitude goes only with"):
        StepScalingPolicy(group, "bad", adjustment_type="ChangeInCapacity",
                          step_adjustments=[StepAdjustment(1)], min_adjustment_magnitude=2)


async def test_target_tracking_scales_in_one_at_a_time_and_never_during_a_refresh() -> None:
    clock = Clock()
    store = MetricStore(clock=clock)
    group = AutoScalingGroup("app", template(), min_size=1, max_size=4, desired_capacity=3,
                             metrics=store, clock=clock, check_interval=0.05)
    policy = TargetTrackingPolicy(group, "app-cpu", "ASGAverageCPUUtilization", 50.0, period=60)
    policy.attach()
    low = policy.alarms[1]

    async def low_window(start: float) -> None:
        """Fifteen periods of 5% CPU from ``start``, then evaluate at their end."""
        for k in range(15):
            store.put("AWS/EC2", "CPUUtilization", 5.0,
                      dimensions={"AutoScalingGroupName": "app"}, timestamp=start + k * 60 + 1)
        clock.t = start + 15 * 60
        await store.evaluate_alarms()

    await low_window(T0)
    assert low.state == AlarmState.ALARM
    assert group.desired_capacity == 2  # 3 * 5 / 50 rounds to 1, but in by one at a time
    await store.evaluate_alarms()  # same window again: measured before the last change
    assert group.desired_capacity == 2
    refresh = group.start_instance_refresh(min_healthy_percentage=50)
    try:
        await low_window(T0 + 15 * 60)
        assert low.state == AlarmState.ALARM and group.desired_capacity == 2
    finally:
        await group.cancel_instance_refresh()
    assert refresh.done
    await store.evaluate_alarms()
    assert group.desired_capacity == 1
