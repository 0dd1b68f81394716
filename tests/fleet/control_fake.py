"""A small, real implementation of the ControlPlane protocol for the HTTP layer's tests.

Two groups (web and app) with their target groups, load balancers, alarms, activities and
DNS records, kept in memory: scaling adds or removes instances, a kill replaces the
instance, a refresh starts (and refuses a second one), each with an activity in AWS's
wording. No process is started: the supervisor's end-to-end tests own those.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.types import ASGIApp

from tierlake.edge.lb.model import Reason, TargetState
from tierlake.fleet.view import (
    ActivityView,
    AlarmView,
    DnsRecordView,
    DnsView,
    FleetStatus,
    GroupView,
    HealthCheckView,
    InstanceRefreshInProgressError,
    InstanceRefreshView,
    InstanceView,
    KillResult,
    LaunchTemplateRef,
    ListenerView,
    LoadBalancerView,
    RefreshResult,
    ScalingResult,
    TargetGroupView,
    TargetHealthDescription,
    TargetHealthView,
    TargetRef,
    check_desired_capacity,
)
from tierlake.ops.prometheus import MetricSeries, Series

NOW = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)


@dataclass
class _Instance:
    id: str
    port: int
    pid: int
    state: str = "InService"
    health: str = "Healthy"
    target: TargetState = TargetState.HEALTHY


@dataclass
class _Group:
    name: str
    min: int
    max: int
    desired: int
    instances: list[_Instance] = field(default_factory=list)
    refresh: InstanceRefreshView | None = None


class FakeControlPlane:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.groups = {name: _Group(name, 2, 4, 2) for name in ("web", "app")}
        for group in self.groups.values():
            for _ in range(group.desired):
                group.instances.append(self._new_instance())
        self.activities: list[ActivityView] = []
        self.failure: Exception | None = None  # raised by the next action (tests set it)
        self.requests = 0.0

    def _new_instance(self, state: str = "InService") -> _Instance:
        n = next(self._ids)
        return _Instance(f"i-{n:017x}", 20000 + n, 40000 + n, state,
                         target=TargetState.HEALTHY if state == "InService"
                         else TargetState.INITIAL)

    def _activity(self, group: str, description: str, cause: str) -> None:
        self.activities.insert(0, ActivityView(
            activity_id=f"act-{len(self.activities) + 1}", auto_scaling_group_name=group,
            description=description, cause=cause, status_code="Successful", progress=100,
            start_time=NOW, end_time=NOW))

    def _raise_failure(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    # -- the protocol ---------------------------------------------------------------------------

    def status(self) -> FleetStatus:
        groups = [GroupView(
            auto_scaling_group_name=g.name, min_size=g.min, max_size=g.max,
            desired_capacity=g.desired, health_check_type="ELB", target_group_names=[g.name],
            launch_template=LaunchTemplateRef(launch_template_name=g.name, version="1"),
            instances=[InstanceView(
                instance_id=i.id, lifecycle_state=i.state, health_status=i.health,
                port=i.port, pid=i.pid, age_seconds=125.0,
                launch_template=LaunchTemplateRef(launch_template_name=g.name, version="1"))
                for i in g.instances],
            instance_refresh=g.refresh) for g in self.groups.values()]
        fast = HealthCheckView(health_check_path="/health", health_check_interval_seconds=1.0,
                               health_check_timeout_seconds=0.8, healthy_threshold_count=2,
                               unhealthy_threshold_count=2, matcher="200")
        target_groups = [TargetGroupView(
            target_group_name=g.name, load_balancing_algorithm="least_outstanding_requests",
            health_check=fast, deregistration_delay_seconds=5.0,
            targets=[TargetHealthDescription(
                target=TargetRef(id=i.id, port=i.port),
                target_health=TargetHealthView(
                    state=i.target,
                    reason=None if i.target is TargetState.HEALTHY
                    else Reason.INITIAL_HEALTH_CHECKING,
                    description=None if i.target is TargetState.HEALTHY
                    else "Initial health checks in progress"),
                in_flight=0) for i in g.instances]) for g in self.groups.values()]
        return FleetStatus(
            auto_scaling_groups=groups,
            load_balancers=[
                LoadBalancerView(load_balancer_name="web", scheme="internet-facing",
                                 dns_name="shop.tierlake.test",
                                 listeners=[ListenerView(port=8000)], target_group_names=["web"]),
                LoadBalancerView(load_balancer_name="app", scheme="internal",
                                 dns_name="internal-app.tierlake.test",
                                 listeners=[ListenerView(port=8001)], target_group_names=["app"]),
            ],
            target_groups=target_groups,
            alarms=[AlarmView(
                alarm_name="TargetTracking-app-AlarmHigh-1b2c", state_value="OK",
                state_reason="Threshold Crossed: 3 datapoints [4.0 (01/12/26 07:59:50), 3.0 "
                             "(01/12/26 07:59:40), 5.0 (01/12/26 07:59:30)] were not greater "
                             "than the threshold (50.0).",
                namespace="AWS/ApplicationELB", metric_name="RequestCountPerTarget",
                dimensions={"TargetGroup": "app"}, statistic="Sum",
                comparison_operator="GreaterThanThreshold", threshold=50.0, period=10.0,
                evaluation_periods=3, state_updated_timestamp=NOW)],
            activities=list(self.activities),
            dns=DnsView(hosted_zone="tierlake.test", port=8053, records=[
                DnsRecordView(name="shop.tierlake.test", type="A", ttl=5,
                              values=["127.0.0.1", "127.0.0.2"], routing_policy="multivalue",
                              set_identifier="shop", health_check_id="hc-web", healthy=True)]),
            generated_at=NOW)

    async def scale(self, group: str, desired: int) -> ScalingResult:
        self._raise_failure()
        g = self.groups[group]
        check_desired_capacity(self.status().group(group), desired)
        before = g.desired
        g.desired = desired
        while len(g.instances) < desired:
            instance = self._new_instance("Pending")
            g.instances.append(instance)
            self._activity(group, f"Launching a new EC2 instance: {instance.id}",
                           f"At 2026-12-01T08:00:00Z a user request explicitly set group "
                           f"desired capacity changing the desired capacity from {before} to "
                           f"{desired}.")
        while len(g.instances) > desired:
            instance = g.instances.pop(0)
            self._activity(group, f"Terminating EC2 instance: {instance.id}",
                           f"At 2026-12-01T08:00:00Z a user request explicitly set group "
                           f"desired capacity changing the desired capacity from {before} to "
                           f"{desired}.")
        return ScalingResult(auto_scaling_group_name=group, previous_desired_capacity=before,
                             desired_capacity=desired,
                             message=f"{abs(desired - before)} instance(s) "
                                     f"{'launching' if desired >= before else 'terminating'}.")

    async def kill(self, instance_id: str) -> KillResult:
        self._raise_failure()
        for g in self.groups.values():
            for instance in g.instances:
                if instance.id == instance_id:
                    g.instances.remove(instance)
                    replacement = self._new_instance("Pending")
                    g.instances.append(replacement)
                    self._activity(
                        g.name, f"Terminating EC2 instance: {instance_id}",
                        "At 2026-12-01T08:00:00Z an instance was taken out of service in "
                        "response to an EC2 health check indicating it has been terminated "
                        "or stopped.")
                    return KillResult(instance_id=instance_id, auto_scaling_group_name=g.name,
                                      pid=instance.pid,
                                      message=f"Sent SIGKILL to {instance_id} (pid "
                                              f"{instance.pid}) of {g.name}.")
        raise AssertionError("the API checks the instance exists first")

    async def refresh(self, group: str, min_healthy_percentage: int) -> RefreshResult:
        self._raise_failure()
        g = self.groups[group]
        if g.refresh is not None and g.refresh.status in ("Pending", "InProgress"):
            raise InstanceRefreshInProgressError(
                f"An Instance Refresh is already in progress and blocks the execution of "
                f"this Instance Refresh ({g.refresh.instance_refresh_id}).")
        g.refresh = InstanceRefreshView(
            instance_refresh_id=f"refresh-{group}-1", status="Pending", percentage_complete=0,
            instances_to_update=len(g.instances), min_healthy_percentage=min_healthy_percentage,
            start_time=NOW)
        return RefreshResult(auto_scaling_group_name=group,
                             instance_refresh_id=g.refresh.instance_refresh_id,
                             min_healthy_percentage=min_healthy_percentage,
                             message=f"Instance refresh {g.refresh.instance_refresh_id} of "
                                     f"{group} started.")

    def metric_series(self) -> Iterable[MetricSeries]:
        if self.failure is not None:
            self._raise_failure()
        self.requests += 10
        return [
            Series("AWS/ApplicationELB", "RequestCount", {"LoadBalancer": "web"}, "Count",
                   10.0, self.requests, int(self.requests // 10)),
            Series("AWS/ApplicationELB", "RequestCount",
                   {"LoadBalancer": "web", "TargetGroup": "web"}, "Count", 10.0, self.requests,
                   int(self.requests // 10)),
            Series("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", {"LoadBalancer": "app"},
                   "Count", None, 0.0, 0),
            Series("AWS/EC2", "CPUUtilization",
                   {"InstanceId": self.groups["app"].instances[0].id}, "Percent", 12.5, 37.5, 3),
        ]


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start serving the control app")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


