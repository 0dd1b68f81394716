"""The load balancer's shared vocabulary, in ALB's own terms.

Target states and reason codes are those of ``DescribeTargetHealth``; the health-check
parameters and their ``alb`` defaults are those of ``CreateTargetGroup``; an
:class:`AccessLogEntry` holds one request's fields of an ALB access-log line (formatting
lives with the log writer). Components that see every request (the access log, the
metrics) implement :class:`RequestObserver`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Protocol


class TargetState(enum.StrEnum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNUSED = "unused"
    DRAINING = "draining"
    UNAVAILABLE = "unavailable"


class Reason(enum.StrEnum):
    """``TargetHealth.Reason``: why a target is not healthy."""

    REGISTRATION_IN_PROGRESS = "Elb.RegistrationInProgress"
    INITIAL_HEALTH_CHECKING = "Elb.InitialHealthChecking"
    INTERNAL_ERROR = "Elb.InternalError"
    RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"
    TIMEOUT = "Target.Timeout"
    FAILED_HEALTH_CHECKS = "Target.FailedHealthChecks"
    NOT_REGISTERED = "Target.NotRegistered"
    NOT_IN_USE = "Target.NotInUse"
    DEREGISTRATION_IN_PROGRESS = "Target.DeregistrationInProgress"
    HEALTH_CHECK_DISABLED = "Target.HealthCheckDisabled"


Algorithm = Literal["round_robin", "least_outstanding_requests", "weighted_random"]


@dataclass(frozen=True)
class HealthCheckSettings:
    """A target group's health check (``CreateTargetGroup``'s HealthCheck* parameters)."""

    path: str = "/"
    interval_seconds: float = 30.0
    timeout_seconds: float = 5.0
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"  # HTTP codes: "200", "200,204", "200-299"

    def __post_init__(self) -> None:
        if not 0 < self.timeout_seconds < self.interval_seconds:
            raise ValueError("the health-check timeout must be positive and shorter than its "
                             f"interval (got {self.timeout_seconds} s / "
                             f"{self.interval_seconds} s)")
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise ValueError("health-check thresholds are at least 1")


@dataclass(frozen=True)
class TargetGroupSettings:
    """A target group's health check and attributes."""

    health_check: HealthCheckSettings = field(default_factory=HealthCheckSettings)
    algorithm: Algorithm = "round_robin"  # load_balancing.algorithm.type
    deregistration_delay_seconds: float = 300.0  # deregistration_delay.timeout_seconds
    slow_start_seconds: float = 0.0  # slow_start.duration_seconds (0: off; ALB: 30-900)
    passive_detection: bool = True  # tierlake: a refused connection is unhealthy at once


# ALB's own defaults (HTTP, instance targets), and tierlake's default for one machine:
# a killed target leaves rotation in under 3 s, and Ctrl-C drains in seconds.
PROFILES: dict[str, TargetGroupSettings] = {
    "alb": TargetGroupSettings(),
    "fast": TargetGroupSettings(
        health_check=HealthCheckSettings(interval_seconds=1.0, timeout_seconds=0.8,
                                         healthy_threshold=2, unhealthy_threshold=2),
        deregistration_delay_seconds=5.0),
}


@dataclass
class AccessLogEntry:
    """One request as an ALB access-log line records it (one per request, also for requests
    the balancer answered itself). Times are seconds; -1 where not dispatched, as ALB."""

    type: str  # "http"
    time: float  # epoch seconds, when the response was sent
    elb: str  # the load balancer's name (ALB: app/<name>/<id>)
    client: tuple[str, int]
    target: tuple[str, int] | None  # None: not dispatched ("-")
    request_processing_time: float
    target_processing_time: float
    response_processing_time: float
    elb_status_code: int | None  # None when the client went before an answer ("-")
    target_status_code: int | None
    received_bytes: int
    sent_bytes: int
    request: str  # "GET http://host:80/path?q HTTP/1.1"
    user_agent: str
    target_group: str  # the target group's name ("-" when none); ALB logs its ARN
    trace_id: str  # "Root=1-...-..."
    domain_name: str  # the Host header
    matched_rule_priority: str  # "0" default rule, "1".."50000", "-"
    request_creation_time: float  # epoch seconds
    actions_executed: list[str]  # "forward", "fixed-response", "redirect", "waf" ...
    redirect_url: str = "-"
    error_reason: str = "-"  # ALB's error reason codes, e.g. "TargetConnectionErrorCode"
    targets_tried: list[tuple[str, int]] = field(default_factory=list)  # target:port_list
    target_status_codes: list[int] = field(default_factory=list)  # target_status_code_list


class RequestObserver(Protocol):
    """Something told of every request the balancer finished (access log, metrics)."""

    def request_done(self, entry: AccessLogEntry) -> None: ...
