"""Scaling policies: target tracking, step and simple scaling, driven by CloudWatch alarms.

Each policy is a small class with ``attach()`` / ``detach()`` and ``describe()``
(``PutScalingPolicy`` / ``DeletePolicy`` / ``DescribePolicies``); a new kind is a new class.

* :class:`TargetTrackingPolicy` (predefined metrics ``ASGAverageCPUUtilization`` and
  ``ALBRequestCountPerTarget``) creates its two alarms, as AWS does:
  ``TargetTracking-<group>-AlarmHigh-<uuid>`` (3 of 3 periods above the target) scales out
  fast and proportionally, new capacity = ceil(capacity * metric / target), counting only
  warmed-up instances and only a datapoint measured after they were all warm (a stale
  datapoint from before the last scale-out would scale out twice);
  ``TargetTracking-<group>-AlarmLow-<uuid>`` (15 of 15 periods below 90% of the target)
  scales in by one instance at a time, once its whole window was measured after the group's
  last capacity change, never while an instance warms up or an instance refresh runs, and
  not at all with ``DisableScaleIn``.
* :class:`StepScalingPolicy` on a user alarm: step adjustments bounded relative to the
  alarm's threshold, ``ChangeInCapacity`` / ``PercentChangeInCapacity`` /
  ``ExactCapacity``, ``MinAdjustmentMagnitude``, and a cooldown (the group's default unless
  given). :class:`SimpleScalingPolicy` is one adjustment with a cooldown.

AWS documentation followed: "Target tracking scaling policies for Amazon EC2 Auto Scaling"
(the alarms it creates, scale out fast / in gradually, warmup), "Step and simple scaling
policies" (step adjustments, adjustment types, rounding of percent changes,
MinAdjustmentMagnitude), "Scaling cooldowns for Amazon EC2 Auto Scaling".
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from tierlake.fleet.asg import AutoScalingError, AutoScalingGroup
from tierlake.fleet.instance import LifecycleState
from tierlake.ops.cloudwatch import Alarm, AlarmAction

log = structlog.get_logger(__name__)

AdjustmentType = Literal["ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity"]
_ADJUSTMENT_TYPES = ("ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity")


@dataclass(frozen=True)
class PredefinedMetric:
    """A predefined metric of target tracking: where it lives and how it is aggregated."""

    namespace: str
    metric_name: str
    statistic: str
    dimensions: Callable[[AutoScalingGroup, str | None], dict[str, str]]


def _group_dims(group: AutoScalingGroup, label: str | None) -> dict[str, str]:
    return {"AutoScalingGroupName": group.name}


def _target_group_dims(group: AutoScalingGroup, label: str | None) -> dict[str, str]:
    if not label:
        raise AutoScalingError("ALBRequestCountPerTarget needs a resource_label: the target "
                               "group's name, as ElbMetrics publishes it")
    return {"TargetGroup": label}


PREDEFINED_METRICS: dict[str, PredefinedMetric] = {
    "ASGAverageCPUUtilization": PredefinedMetric("AWS/EC2", "CPUUtilization", "Average",
                                                 _group_dims),
    "ALBRequestCountPerTarget": PredefinedMetric("AWS/ApplicationELB", "RequestCountPerTarget",
                                                 "Sum", _target_group_dims),
}


class TargetTrackingPolicy:
    """Keep a metric at a target value by changing the group's desired capacity."""

    policy_type = "TargetTrackingScaling"

    def __init__(self, group: AutoScalingGroup, name: str, predefined_metric: str,
                 target_value: float, *, resource_label: str | None = None,
                 disable_scale_in: bool = False, estimated_instance_warmup: float | None = None,
                 period: float = 60.0, high_periods: int = 3, low_periods: int = 15,
                 low_ratio: float = 0.9) -> None:
        if predefined_metric not in PREDEFINED_METRICS:
            raise AutoScalingError(f"unknown predefined metric {predefined_metric!r}: use "
                                   f"{' or '.join(PREDEFINED_METRICS)}")
        if target_value <= 0:
            raise AutoScalingError(f"policy {name}: the target value must be positive")
        self.group, self.name = group, name
        self.metric = PREDEFINED_METRICS[predefined_metric]
        self.predefined_metric = predefined_metric
        self.dimensions = self.metric.dimensions(group, resource_label)
        self.resource_label = resource_label
        self.target_value = target_value
        self.disable_scale_in = disable_scale_in
        self.warmup = (group.default_instance_warmup if estimated_instance_warmup is None
                       else estimated_instance_warmup)
        self.period, self.high_periods, self.low_periods = period, high_periods, low_periods
        self.low_ratio = low_ratio
        self.alarms: list[Alarm] = []

    def _alarm(self, kind: str, threshold: float, operator: str, periods: int,
               run: Callable[[Alarm], object]) -> Alarm:
        return Alarm(
            name=f"TargetTracking-{self.group.name}-{kind}-{uuid.uuid4()}",
            namespace=self.metric.namespace, metric_name=self.metric.metric_name,
            dimensions=dict(self.dimensions), statistic=self.metric.statistic,
            period=self.period, evaluation_periods=periods, threshold=threshold,
            comparison_operator=operator,
            description=f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {self.name}.",
            alarm_actions=[AlarmAction(self.name, run, repeats=True)])  # type: ignore[arg-type]

    def attach(self) -> None:
        """Create the policy's alarms in the group's metric store."""
        self.alarms = [self._alarm("AlarmHigh", self.target_value, "GreaterThanThreshold",
                                   self.high_periods, self._scale_out)]
        if not self.disable_scale_in:
            self.alarms.append(self._alarm("AlarmLow", self.target_value * self.low_ratio,
                                           "LessThanThreshold", self.low_periods,
                                           self._scale_in))
        for alarm in self.alarms:
            self.group.metrics.put_metric_alarm(alarm)

    def detach(self) -> None:
        self.group.metrics.delete_alarms(a.name for a in self.alarms)
        self.alarms = []

    def _warming(self) -> bool:
        g = self.group
        return any(i.lifecycle_state in (LifecycleState.PENDING, LifecycleState.PENDING_WAIT)
                   or (i.lifecycle_state == LifecycleState.IN_SERVICE
                       and not g.warmed_up(i, self.warmup)) for i in g.instances)

    def _scale_out(self, alarm: Alarm) -> None:
        g = self.group
        # warming instances do not count yet (their metrics are not the group's), and only a
        # datapoint measured once every counted instance was warm says what they can carry
        warm = [i for i in g.in_service() if g.warmed_up(i, self.warmup)]
        ready = max(((i.in_service_time or 0.0) + self.warmup for i in warm), default=0.0)
        points = [p for p in alarm.last_datapoints if p is not None and p.timestamp >= ready]
        if not points:
            return
        base = len(warm) or g.desired_capacity
        new = math.ceil(base * points[-1].value / self.target_value)
        if new > g.desired_capacity:
            g.scale_by_policy(new, alarm=alarm.name, policy=self.name)

    def _scale_in(self, alarm: Alarm) -> None:
        g = self.group
        if (g.refresh is not None and g.refresh.active) or self._warming():
            return
        # the whole window must have been measured at the current capacity
        points = alarm.last_datapoints
        if not points or any(p is None or p.timestamp < g.last_scaling_time for p in points):
            return
        value = points[-1].value if points[-1] is not None else 0.0
        proposed = math.ceil(g.desired_capacity * value / self.target_value)
        new = max(proposed, g.desired_capacity - 1, g.min_size)  # one instance at a time
        if new < g.desired_capacity:
            g.scale_by_policy(new, alarm=alarm.name, policy=self.name)

    def describe(self) -> dict[str, object]:
        return {
            "AutoScalingGroupName": self.group.name, "PolicyName": self.name,
            "PolicyType": self.policy_type,
            "TargetTrackingConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": self.predefined_metric,
                    **({"ResourceLabel": self.resource_label} if self.resource_label else {})},
                "TargetValue": self.target_value, "DisableScaleIn": self.disable_scale_in},
            "EstimatedInstanceWarmup": self.warmup,
            "Alarms": [{"AlarmName": a.name} for a in self.alarms],
        }


@dataclass(frozen=True)
class StepAdjustment:
    """A step: the breach (metric - threshold) in [lower, upper) changes capacity by
    ``scaling_adjustment``; a None bound is unbounded."""

    scaling_adjustment: int
    metric_interval_lower_bound: float | None = None
    metric_interval_upper_bound: float | None = None

    def covers(self, breach: float) -> bool:
        low = -math.inf if self.metric_interval_lower_bound is None else \
            self.metric_interval_lower_bound
        high = math.inf if self.metric_interval_upper_bound is None else \
            self.metric_interval_upper_bound
        return low <= breach < high


def percent_change(current: int, percent: float) -> int:
    """AWS's rounding of a percent change: above 1 down, 0..1 to 1, -1..0 to -1, below -1
    up (toward zero)."""
    delta = current * percent / 100.0
    if delta > 1:
        return math.floor(delta)
    if delta > 0:
        return 1
    if delta == 0:
        return 0
    if delta > -1:
        return -1
    return math.ceil(delta)


class StepScalingPolicy:
    """Change capacity by the step the alarm's breach falls in."""

    policy_type = "StepScaling"

    def __init__(self, group: AutoScalingGroup, name: str, *,
                 adjustment_type: AdjustmentType, step_adjustments: Sequence[StepAdjustment],
                 min_adjustment_magnitude: int | None = None,
                 cooldown: float | None = None) -> None:
        if adjustment_type not in _ADJUSTMENT_TYPES:
            raise AutoScalingError(f"policy {name}: AdjustmentType must be one of "
                                   f"{', '.join(_ADJUSTMENT_TYPES)}")
        if not step_adjustments:
            raise AutoScalingError(f"policy {name}: give at least one step adjustment")
        if min_adjustment_magnitude is not None and adjustment_type != "PercentChangeInCapacity":
            raise AutoScalingError(f"policy {name}: MinAdjustmentMagnitude goes only with "
                                   "PercentChangeInCapacity")
        _check_steps(name, step_adjustments)
        self.group, self.name = group, name
        self.adjustment_type: AdjustmentType = adjustment_type
        self.steps = list(step_adjustments)
        self.min_adjustment_magnitude = min_adjustment_magnitude
        self.cooldown = group.default_cooldown if cooldown is None else cooldown
        self.alarms: list[Alarm] = []

    def action(self) -> AlarmAction:
        return AlarmAction(self.name, self.execute, repeats=True)

    def attach(self, alarm: Alarm | None = None) -> None:
        """Run this policy when ``alarm`` is in ALARM (every period it stays there)."""
        if alarm is None:
            raise AutoScalingError(f"policy {self.name}: a step policy acts on an alarm; pass "
                                   "the alarm to attach it to")
        alarm.alarm_actions.append(self.action())
        self.alarms.append(alarm)

    def detach(self) -> None:
        for alarm in self.alarms:
            alarm.alarm_actions[:] = [a for a in alarm.alarm_actions if a.name != self.name]
        self.alarms = []

    def new_capacity(self, breach: float) -> int | None:
        step = next((s for s in self.steps if s.covers(breach)), None)
        if step is None:
            return None
        current = self.group.desired_capacity
        if self.adjustment_type == "ExactCapacity":
            return step.scaling_adjustment
        if self.adjustment_type == "ChangeInCapacity":
            return current + step.scaling_adjustment
        delta = percent_change(current, step.scaling_adjustment)
        if self.min_adjustment_magnitude and 0 < abs(delta) < self.min_adjustment_magnitude:
            delta = int(math.copysign(self.min_adjustment_magnitude, delta))
        return current + delta

    def execute(self, alarm: Alarm) -> None:
        """``ExecutePolicy`` from the alarm's newest datapoint; skipped in cooldown."""
        g = self.group
        value = alarm.latest_value()
        if value is None:
            return
        if g.in_cooldown():
            log.info("asg.policy_in_cooldown", group=g.name, policy=self.name)
            return
        new = self.new_capacity(value - alarm.threshold)
        if new is None:
            return
        g.scale_by_policy(new, alarm=alarm.name, policy=self.name, cooldown=self.cooldown)

    def describe(self) -> dict[str, object]:
        return {
            "AutoScalingGroupName": self.group.name, "PolicyName": self.name,
            "PolicyType": self.policy_type, "AdjustmentType": self.adjustment_type,
            "MinAdjustmentMagnitude": self.min_adjustment_magnitude, "Cooldown": self.cooldown,
            "StepAdjustments": [{"MetricIntervalLowerBound": s.metric_interval_lower_bound,
                                 "MetricIntervalUpperBound": s.metric_interval_upper_bound,
                                 "ScalingAdjustment": s.scaling_adjustment} for s in self.steps],
            "Alarms": [{"AlarmName": a.name} for a in self.alarms],
        }


class SimpleScalingPolicy(StepScalingPolicy):
    """One adjustment whatever the breach, then the cooldown."""

    policy_type = "SimpleScaling"

    def __init__(self, group: AutoScalingGroup, name: str, *, adjustment_type: AdjustmentType,
                 scaling_adjustment: int, cooldown: float | None = None,
                 min_adjustment_magnitude: int | None = None) -> None:
        super().__init__(group, name, adjustment_type=adjustment_type,
                         step_adjustments=[StepAdjustment(scaling_adjustment)],
                         min_adjustment_magnitude=min_adjustment_magnitude, cooldown=cooldown)


def _check_steps(name: str, steps: Sequence[StepAdjustment]) -> None:
    """Steps may not overlap (AWS: "step adjustments can't overlap")."""
    spans = sorted((-math.inf if s.metric_interval_lower_bound is None
                     else s.metric_interval_lower_bound,
                     math.inf if s.metric_interval_upper_bound is None
                     else s.metric_interval_upper_bound) for s in steps)
    for low, high in spans:
        if low >= high:
            raise AutoScalingError(f"policy {name}: a step's lower bound ({low}) must be below "
                                   f"its upper bound ({high})")
    for (_, high), (low, _) in zip(spans, spans[1:], strict=False):
        if low < high:
            raise AutoScalingError(f"policy {name}: step adjustments overlap at {low}..{high}; "
                                   "each breach must fall in one step")
