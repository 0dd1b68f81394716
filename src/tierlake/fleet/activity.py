"""The scaling activity history of an Auto Scaling group, in AWS's own wording.

An :class:`Activity` is one item of ``DescribeScalingActivities``: Description ("Launching a
new EC2 instance: i-…", "Terminating EC2 instance: i-…"), Cause (what changed the desired
capacity, then why this instance started or stopped, each sentence starting "At <time>"),
StatusCode, start and end time, Progress. The sentences are those the AWS console and API
show, as quoted in "Verify a scaling activity for an Auto Scaling group" and "Health checks
for instances in an Auto Scaling group" (EC2 Auto Scaling User Guide).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime


class StatusCode(enum.StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    MID_LIFECYCLE_ACTION = "MidLifecycleAction"
    WAITING_FOR_ELB_CONNECTION_DRAINING = "WaitingForELBConnectionDraining"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


def aws_time(ts: float) -> str:
    """2026-12-01T08:00:00Z, the form Causes use."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aws_time_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- what changed the desired capacity ------------------------------------------------------

def user_update_cause(at: float, min_size: int, max_size: int, desired: int, old: int) -> str:
    return (f"At {aws_time(at)} a user request update of AutoScalingGroup constraints to "
            f"min: {min_size}, max: {max_size}, desired: {desired} changing the desired "
            f"capacity from {old} to {desired}.")


def user_set_desired_cause(at: float, old: int, new: int) -> str:
    return (f"At {aws_time(at)} a user request explicitly set group desired capacity changing "
            f"the desired capacity from {old} to {new}.")


def alarm_cause(at: float, alarm: str, policy: str, old: int, new: int) -> str:
    return (f"At {aws_time(at)} a monitor alarm {alarm} in state ALARM triggered policy "
            f"{policy} changing the desired capacity from {old} to {new}.")


# -- why this instance started or stopped ---------------------------------------------------

def launch_for_capacity(at: float, old: int, new: int) -> str:
    return (f"At {aws_time(at)} an instance was started in response to a difference between "
            f"desired and actual capacity, increasing the capacity from {old} to {new}.")


def launch_for_unhealthy(at: float) -> str:
    return (f"At {aws_time(at)} an instance was launched in response to an unhealthy instance "
            "needing to be replaced.")


def launch_for_refresh(at: float) -> str:
    return f"At {aws_time(at)} an instance was launched in response to an instance refresh."


def terminate_for_capacity(at: float, old: int, new: int) -> str:
    return (f"At {aws_time(at)} an instance was taken out of service in response to a "
            f"difference between desired and actual capacity, shrinking the capacity from "
            f"{old} to {new}.")


def terminate_for_ec2_health(at: float) -> str:
    return (f"At {aws_time(at)} an instance was taken out of service in response to an EC2 "
            "health check indicating it has been terminated or stopped.")


def terminate_for_elb_health(at: float) -> str:
    return (f"At {aws_time(at)} an instance was taken out of service in response to an ELB "
            "system health check failure.")


def terminate_for_user(at: float, instance_id: str, old: int | None, new: int | None) -> str:
    text = (f"At {aws_time(at)} instance {instance_id} was taken out of service in response "
            "to a user request")
    if old is not None and new is not None and old != new:
        text += f", shrinking the capacity from {old} to {new}"
    return text + "."


def terminate_for_refresh(at: float, instance_id: str) -> str:
    return (f"At {aws_time(at)} an instance was taken out of service in response to an "
            f"instance refresh.  At {aws_time(at)} instance {instance_id} was selected for "
            "termination.")


def join(*sentences: str | None) -> str:
    """Causes are joined with two spaces, as AWS writes them."""
    return "  ".join(s for s in sentences if s)


@dataclass
class Activity:
    """One scaling activity (``DescribeScalingActivities``' Activity)."""

    group: str
    description: str
    cause: str
    start_time: float
    instance_id: str | None = None
    status_code: StatusCode = StatusCode.IN_PROGRESS
    status_message: str = ""
    progress: int = 0
    end_time: float | None = None
    activity_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def finish(self, at: float, status: StatusCode = StatusCode.SUCCESSFUL,
               message: str = "") -> None:
        self.status_code, self.status_message = status, message
        self.end_time, self.progress = at, 100

    @property
    def done(self) -> bool:
        return self.status_code in (StatusCode.SUCCESSFUL, StatusCode.FAILED,
                                    StatusCode.CANCELLED)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "ActivityId": self.activity_id, "AutoScalingGroupName": self.group,
            "Description": self.description, "Cause": self.cause,
            "StartTime": aws_time_ms(self.start_time), "StatusCode": str(self.status_code),
            "Progress": self.progress,
        }
        if self.end_time is not None:
            d["EndTime"] = aws_time_ms(self.end_time)
        if self.status_message:
            d["StatusMessage"] = self.status_message
        return d
