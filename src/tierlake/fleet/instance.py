"""An Auto Scaling group's instance: its lifecycle state, health status and process.

The states are EC2 Auto Scaling's ("Amazon EC2 Auto Scaling instance lifecycle"): an
instance is ``Pending`` while it starts, ``Pending:Wait`` while a launching lifecycle hook
holds it, ``InService`` once it runs, ``Terminating`` (and ``Terminating:Wait`` for a
terminating hook) while it drains and stops, then ``Terminated``. ``Pending`` and
``InService`` instances make the group's capacity.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tierlake.fleet.activity import aws_time
from tierlake.fleet.launch import LaunchTemplate
from tierlake.fleet.process import Process


class LifecycleState(enum.StrEnum):
    PENDING = "Pending"
    PENDING_WAIT = "Pending:Wait"
    IN_SERVICE = "InService"
    TERMINATING = "Terminating"
    TERMINATING_WAIT = "Terminating:Wait"
    TERMINATED = "Terminated"


class HealthStatus(enum.StrEnum):
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


COUNTED = (LifecycleState.PENDING, LifecycleState.PENDING_WAIT, LifecycleState.IN_SERVICE)


@dataclass(eq=False)
class GroupInstance:
    """One instance of a group (``DescribeAutoScalingInstances``' item)."""

    instance_id: str
    template: LaunchTemplate
    host: str
    port: int
    process: Process
    launch_time: float
    lifecycle_state: LifecycleState = LifecycleState.PENDING
    health_status: HealthStatus = HealthStatus.HEALTHY
    protected_from_scale_in: bool = False
    in_service_time: float | None = None
    registered: bool = False

    @property
    def counted(self) -> bool:
        return self.lifecycle_state in COUNTED

    def describe(self) -> dict[str, object]:
        return {
            "InstanceId": self.instance_id,
            "LifecycleState": str(self.lifecycle_state),
            "HealthStatus": str(self.health_status),
            "LaunchTemplate": {"LaunchTemplateName": self.template.name,
                               "Version": str(self.template.version)},
            "ProtectedFromScaleIn": self.protected_from_scale_in,
            "LaunchTime": aws_time(self.launch_time),
            "Host": self.host, "Port": self.port, "Pid": self.process.pid,
        }
