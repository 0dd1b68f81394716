"""What the operator sees of the control plane, and the small protocol that provides it.

The control plane (`tierlake up`) owns the load balancers, Auto Scaling groups, CloudWatch
alarms and the DNS server; the operator's API, page, Prometheus endpoint and `tierlake
fleet` read and drive it only through :class:`ControlPlane`, so they stay testable against
any implementation and the supervisor stays free of HTTP.

The models serialise with AWS's own field names (PascalCase, by alias), so the JSON reads
like the AWS APIs it stands for:

- groups as ``DescribeAutoScalingGroups`` (``AutoScalingGroupName``, ``MinSize``,
  ``DesiredCapacity``, ``Instances[].LifecycleState``/``HealthStatus``/
  ``ProtectedFromScaleIn``) and ``DescribeInstanceRefreshes`` (``Status``,
  ``PercentageComplete``); activities as ``DescribeScalingActivities``;
  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_AutoScalingGroup.html
- load balancers and target groups as ``DescribeLoadBalancers``, ``DescribeTargetGroups``
  and ``DescribeTargetHealth`` (``Target.Id``/``Port``, ``TargetHealth.State``/``Reason``/
  ``Description``);
  https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetHealth.html
- alarms as ``DescribeAlarms`` (``StateValue``, ``StateReason``, ``StateUpdatedTimestamp``);
- DNS records as Route 53's ``ResourceRecordSet`` (``SetIdentifier``, ``Weight``,
  ``Failover``, ``MultiValueAnswer``, ``HealthCheckId``).

Python code uses the snake_case attribute names; both are accepted on input. Times are
timezone-aware (UTC), as AWS's timestamps: a naive time is refused when the model is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_pascal

from tierlake.edge.lb.model import HealthCheckSettings, Reason, TargetGroupSettings, TargetState
from tierlake.errors import TierlakeError
from tierlake.ops.prometheus import MetricSeries

# EC2 Auto Scaling's lifecycle states (DescribeAutoScalingInstances' LifecycleState).
LifecycleState = Literal[
    "Pending", "Pending:Wait", "Pending:Proceed", "InService", "Standby",
    "Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching",
    "Detached", "EnteringStandby",
]
HealthStatus = Literal["Healthy", "Unhealthy"]
RefreshStatus = Literal["Pending", "InProgress", "Successful", "Failed", "Cancelling",
                        "Cancelled", "RollbackInProgress", "RollbackFailed",
                        "RollbackSuccessful"]
AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
ALARM_STATES: tuple[AlarmState, ...] = ("OK", "ALARM", "INSUFFICIENT_DATA")
# The header an action (POST) must carry, with the token from GET /api/csrf-token.
CSRF_HEADER = "X-CSRF-Token"


class _Model(BaseModel):
    # extra="ignore": a component's own Describe* dict (asg.describe(), tg.describe()) may
    # carry fields the view does not show; it validates as it is.
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True,
                              frozen=True, extra="ignore")


# -- Auto Scaling -------------------------------------------------------------------------------

class LaunchTemplateRef(_Model):
    launch_template_name: str
    version: str


class InstanceView(_Model):
    instance_id: str
    lifecycle_state: LifecycleState
    health_status: HealthStatus
    host: str | None = None  # tierlake: the address the instance listens on
    port: int | None = None  # tierlake: the instance's own port on the host
    pid: int | None = None  # tierlake: the OS process
    launch_time: AwareDatetime | None = None
    age_seconds: float = Field(ge=0)  # since its launch time (from LaunchTime when not given)
    protected_from_scale_in: bool = False
    launch_template: LaunchTemplateRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _age_from_launch_time(cls, data: Any) -> Any:
        if isinstance(data, dict) and "AgeSeconds" not in data and "age_seconds" not in data:
            launched = data.get("LaunchTime", data.get("launch_time"))
            if launched is not None:
                when = (launched if isinstance(launched, datetime)
                        else datetime.fromisoformat(str(launched).replace("Z", "+00:00")))
                age = (datetime.now(UTC) - when).total_seconds()
                data = {**data, "AgeSeconds": max(0.0, age)}
        return data


class InstanceRefreshView(_Model):
    instance_refresh_id: str
    status: RefreshStatus
    status_reason: str | None = None
    percentage_complete: int = Field(ge=0, le=100)
    instances_to_update: int = Field(ge=0)
    min_healthy_percentage: int = Field(ge=0, le=100)  # Preferences.MinHealthyPercentage
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_preferences(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("Preferences"), dict):
            wanted = data["Preferences"].get("MinHealthyPercentage")
            if wanted is not None and "MinHealthyPercentage" not in data:
                data = {**data, "MinHealthyPercentage": wanted}
        return data


class GroupView(_Model):
    auto_scaling_group_name: str
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=0)
    desired_capacity: int = Field(ge=0)
    health_check_type: Literal["EC2", "ELB"] = "EC2"
    # DescribeAutoScalingGroups lists TargetGroupARNs; tierlake's target groups have names
    target_group_names: list[str] = Field(
        [], validation_alias=AliasChoices("TargetGroupNames", "TargetGroupARNs",
                                          "target_group_names"))
    launch_template: LaunchTemplateRef | None = None
    instances: list[InstanceView] = []
    instance_refresh: InstanceRefreshView | None = None  # the latest, if any


class ActivityView(_Model):
    activity_id: str
    auto_scaling_group_name: str
    description: str
    cause: str
    status_code: str  # Successful, InProgress, Failed, WaitingForELBConnectionDraining ...
    status_message: str | None = None
    progress: int = Field(0, ge=0, le=100)
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None


# -- Elastic Load Balancing ---------------------------------------------------------------------

class ListenerView(_Model):
    protocol: str = "HTTP"
    port: int
    host: str = "127.0.0.1"  # tierlake: the address it binds


class LoadBalancerView(_Model):
    load_balancer_name: str
    scheme: Literal["internet-facing", "internal"]
    dns_name: str = Field(alias="DNSName")
    listeners: list[ListenerView] = []
    target_group_names: list[str] = []


class HealthCheckView(_Model):
    health_check_path: str
    health_check_interval_seconds: float
    health_check_timeout_seconds: float
    healthy_threshold_count: int
    unhealthy_threshold_count: int
    matcher: str  # Matcher.HttpCode

    @classmethod
    def of(cls, settings: HealthCheckSettings) -> HealthCheckView:
        return cls(health_check_path=settings.path,
                   health_check_interval_seconds=settings.interval_seconds,
                   health_check_timeout_seconds=settings.timeout_seconds,
                   healthy_threshold_count=settings.healthy_threshold,
                   unhealthy_threshold_count=settings.unhealthy_threshold,
                   matcher=settings.matcher)


class TargetRef(_Model):
    id: str
    port: int


class TargetHealthView(_Model):
    state: TargetState
    reason: Reason | None = None
    description: str | None = None


class TargetHealthDescription(_Model):
    target: TargetRef
    target_health: TargetHealthView
    in_flight: int = Field(0, ge=0)  # tierlake: requests sent and not yet answered
    weight: int = 1


class TargetGroupView(_Model):
    target_group_name: str
    load_balancing_algorithm: str  # load_balancing.algorithm.type
    health_check: HealthCheckView
    deregistration_delay_seconds: float
    slow_start_seconds: float = 0.0
    targets: list[TargetHealthDescription] = []

    @classmethod
    def of(cls, name: str, settings: TargetGroupSettings,
           targets: Sequence[Mapping[str, Any]]) -> TargetGroupView:
        """From a target group's settings and its ``describe()`` (DescribeTargetHealth's
        TargetHealthDescriptions, each optionally with ``InFlight`` and ``Weight``)."""
        return cls(target_group_name=name, load_balancing_algorithm=settings.algorithm,
                   health_check=HealthCheckView.of(settings.health_check),
                   deregistration_delay_seconds=settings.deregistration_delay_seconds,
                   slow_start_seconds=settings.slow_start_seconds,
                   targets=[TargetHealthDescription.model_validate(t) for t in targets])


# -- CloudWatch ---------------------------------------------------------------------------------

class AlarmView(_Model):
    alarm_name: str
    state_value: AlarmState
    state_reason: str
    namespace: str
    metric_name: str
    dimensions: dict[str, str] = {}
    statistic: str
    comparison_operator: str
    threshold: float
    period: float
    evaluation_periods: int
    state_updated_timestamp: AwareDatetime

    @classmethod
    def of(cls, alarm: AlarmLike) -> AlarmView:
        """From a CloudWatch alarm object (its ``state_updated`` in epoch seconds)."""
        return cls(alarm_name=alarm.name, state_value=str(alarm.state),
                   state_reason=alarm.state_reason, namespace=alarm.namespace,
                   metric_name=alarm.metric_name, dimensions=dict(alarm.dimensions),
                   statistic=alarm.statistic, comparison_operator=str(alarm.comparison_operator),
                   threshold=alarm.threshold, period=alarm.period,
                   evaluation_periods=alarm.evaluation_periods,
                   state_updated_timestamp=datetime.fromtimestamp(alarm.state_updated, UTC))


class AlarmLike(Protocol):
    """What :meth:`AlarmView.of` reads of an alarm (``ops.cloudwatch.Alarm``'s fields)."""

    name: str
    state: Any  # AlarmState (a StrEnum) or its text
    state_reason: str
    namespace: str
    metric_name: str
    statistic: str
    comparison_operator: Any
    threshold: float
    period: float
    evaluation_periods: int
    state_updated: float

    @property
    def dimensions(self) -> Mapping[str, str]: ...


# -- Route 53 -----------------------------------------------------------------------------------

class DnsRecordView(_Model):
    name: str
    type: str
    ttl: int | None = Field(None, alias="TTL")  # None for an alias record
    values: list[str] = []  # ResourceRecords' values, or the alias target's addresses
    routing_policy: Literal["simple", "weighted", "failover", "multivalue", "latency",
                            "geolocation"] = "simple"
    set_identifier: str | None = None
    weight: int | None = None
    failover: Literal["PRIMARY", "SECONDARY"] | None = None
    health_check_id: str | None = None
    healthy: bool | None = None  # None: no health check

    @model_validator(mode="before")
    @classmethod
    def _values_from_route53(cls, data: Any) -> Any:
        """ListResourceRecordSets' ``ResourceRecords`` / ``AliasTarget`` as plain values."""
        if not isinstance(data, dict) or "Values" in data or "values" in data:
            return data
        if isinstance(data.get("ResourceRecords"), list):
            return {**data, "Values": [str(r.get("Value", "")) for r in data["ResourceRecords"]]}
        if isinstance(alias := data.get("AliasTarget"), dict):
            shown = [str(a) for a in alias.get("Addresses") or []] or [str(alias.get("DNSName"))]
            return {**data, "Values": shown}
        return data


class DnsView(_Model):
    hosted_zone: str
    host: str = "127.0.0.1"
    port: int
    records: list[DnsRecordView] = []


# -- the whole picture, and the answers to actions -----------------------------------------------

class FleetStatus(_Model):
    auto_scaling_groups: list[GroupView] = []
    load_balancers: list[LoadBalancerView] = []
    target_groups: list[TargetGroupView] = []
    alarms: list[AlarmView] = []
    activities: list[ActivityView] = []  # newest first
    dns: DnsView | None = None
    generated_at: AwareDatetime

    def group(self, name: str) -> GroupView:
        for group in self.auto_scaling_groups:
            if group.auto_scaling_group_name == name:
                return group
        raise UnknownGroupError(name, [g.auto_scaling_group_name
                                       for g in self.auto_scaling_groups])

    def instance(self, instance_id: str) -> tuple[GroupView, InstanceView]:
        for group in self.auto_scaling_groups:
            for instance in group.instances:
                if instance.instance_id == instance_id:
                    return group, instance
        raise UnknownInstanceError(instance_id, [
            i.instance_id for g in self.auto_scaling_groups for i in g.instances])


class ScalingResult(_Model):
    auto_scaling_group_name: str
    previous_desired_capacity: int
    desired_capacity: int
    message: str  # what happened, in a sentence


class KillResult(_Model):
    instance_id: str
    auto_scaling_group_name: str
    pid: int | None = None
    message: str


class RefreshResult(_Model):
    auto_scaling_group_name: str
    instance_refresh_id: str
    min_healthy_percentage: int
    message: str


# -- errors (mapped to HTTP in tierlake.fleet.api, with the store API's error body) ---------------

class ControlPlaneError(TierlakeError):
    """A request the control plane refuses. ``status`` is the HTTP status the API answers
    with; ``code`` is AWS's error code where it has one."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownGroupError(ControlPlaneError):
    status, code = 404, "not_found"

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"AutoScalingGroup name not found - no group named {name!r}; "
                         f"known groups: {_names(known)}.")


class UnknownInstanceError(ControlPlaneError):
    status, code = 404, "not_found"

    def __init__(self, instance_id: str, known: Sequence[str]) -> None:
        super().__init__(f"Instance Id not found - no instance {instance_id!r} in any group; "
                         f"known instances: {_names(known)}.")


class InvalidParameterError(ControlPlaneError):
    """AWS's ``ValidationError`` (HTTP 400)."""

    status, code = 400, "ValidationError"


class ScalingActivityInProgressError(ControlPlaneError):
    status, code = 409, "ScalingActivityInProgress"


class InstanceRefreshInProgressError(ControlPlaneError):
    status, code = 409, "InstanceRefreshInProgress"


def check_desired_capacity(group: GroupView, desired: int) -> None:
    """Refuse a desired capacity outside the group's bounds, in SetDesiredCapacity's words."""
    if desired > group.max_size:
        raise InvalidParameterError(
            f"New SetDesiredCapacity value {desired} is above max value {group.max_size} "
            "for the AutoScalingGroup.")
    if desired < group.min_size:
        raise InvalidParameterError(
            f"New SetDesiredCapacity value {desired} is below min value {group.min_size} "
            "for the AutoScalingGroup.")


def _names(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


# -- the protocol -------------------------------------------------------------------------------

class ControlPlane(Protocol):
    """What the supervisor offers the operator's view.

    ``status`` is a snapshot taken on the control plane's loop (cheap: no I/O). The actions
    raise :class:`ControlPlaneError` subclasses for requests they refuse (unknown names,
    AWS's ``ValidationError``, a refresh already in progress); the API checks names and
    bounds against ``status()`` first, so these are the races. ``metric_series`` gives
    every CloudWatch series (see :mod:`tierlake.ops.prometheus`).
    """

    def status(self) -> FleetStatus: ...

    async def scale(self, group: str, desired: int) -> ScalingResult: ...

    async def kill(self, instance_id: str) -> KillResult: ...

    async def refresh(self, group: str, min_healthy_percentage: int) -> RefreshResult: ...

    def metric_series(self) -> Iterable[MetricSeries]: ...
