"""The control plane behind `tierlake up`: one asyncio loop owning the whole traffic path.

The default topology, built from the settings (sections ``lb``, ``dns``, ``fleet``)::

    DNS (Route 53: shop.<zone>, internal-app.<zone>, bi.<zone>)  dns.port, UDP and TCP
      -> internet-facing load balancer `tierlake-web`             web_port
        rule 10: path-pattern /bi, /bi/* -> target group `bi` (below)
        default -> target group `web` <- Auto Scaling group `web`  (min fleet.web_min)
          -> internal load balancer `tierlake-app`                app_port
            -> target group `app` <- Auto Scaling group `app`      (min fleet.app_min)
    internet-facing load balancer `tierlake-bi`                   bi_port
      -> target group `bi` <- Auto Scaling group `bi`              (min fleet.bi_min)
    CloudWatch metric store + alarm evaluator; the control API and page on fleet.control_port

The BI tier (QuickSight's role, when the tier registry has it) is reached two ways: under the
store's own address at ``/bi`` (a listener rule of the web balancer forwards it to the BI
target group, paths unchanged, as an ALB does; the BI app serves every route under ``/bi``),
and on ``bi_port`` through a balancer of its own in front of the same target group, so the
tier stays reachable when the web tier is down and ``tierlake serve bi`` and `up` agree on
its port. One target group, one Auto Scaling group: both listeners reach the same
instances, health-checked once.

Each Auto Scaling group runs `tierlake serve <tier> --port N` processes of its launch
template on free ports and registers them in its target group; the web tier's instances
reach the app tier through the internal load balancer (``TIERLAKE_APP_URL``). The target
groups check ``/health`` (liveness: whether this process serves), not ``/ready``: a web
instance cannot mend an app-tier or database outage, and replacing every instance because a
dependency is down only adds a restart storm to the outage.

Components have one lifecycle, ``await start()`` then ``await stop()``; they start in
dependency order (the app tier's balancer, group and wait for healthy instances, then the web
tier's, then DNS, the control API, the alarms and the pipeline scheduler) and stop in reverse
on SIGINT/SIGTERM: each load balancer stops accepting and lets requests in flight finish
before its group's instances are deregistered (draining) and stopped. A component that fails
to start ends `tierlake up` with one line naming the fix, after every component already
started has been stopped. The supervisor is also the :class:`~tierlake.fleet.view.ControlPlane`
the operator's API and `tierlake fleet` drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import structlog

from tierlake.config import Settings
from tierlake.edge.dns import (
    AliasTarget,
    Change,
    DnsServer,
    HealthChecks,
    HostedZone,
    ResourceRecordSet,
)
from tierlake.edge.lb.accesslog import AccessLogWriter
from tierlake.edge.lb.balancer import Listener, LoadBalancer
from tierlake.edge.lb.model import PROFILES, RequestObserver, TargetGroupSettings
from tierlake.edge.lb.rules import Forward, PathPattern, Rule
from tierlake.edge.lb.targets import TargetGroup
from tierlake.errors import ConfigError, TierlakeError
from tierlake.fleet.asg import AutoScalingError, AutoScalingGroup
from tierlake.fleet.dbcluster import db_cluster_for
from tierlake.fleet.launch import LaunchTemplate
from tierlake.fleet.policies import TargetTrackingPolicy
from tierlake.fleet.tiers import TIERS, Tier
from tierlake.fleet.view import (
    ActivityView,
    AlarmView,
    DnsRecordView,
    DnsView,
    FleetStatus,
    GroupView,
    InvalidParameterError,
    KillResult,
    ListenerView,
    LoadBalancerView,
    RefreshResult,
    ScalingResult,
    TargetGroupView,
    UnknownGroupError,
)
from tierlake.ops.cloudwatch import MetricStore
from tierlake.ops.elb_metrics import ElbMetrics
from tierlake.ops.prometheus import MetricSeries
from tierlake.pipeline.scheduler import PipelineScheduler

log = structlog.get_logger(__name__)
DRAIN_SECONDS = 10.0  # how long a stopping load balancer lets requests in flight finish

# How the traffic path exposes the tiers beyond each one's own listener. The app tier is
# called by the web tier only: its balancer is internal. The front tier's balancer carries
# path rules (ALB's path-pattern conditions, ``CreateRule``) for tiers a browser reaches under
# the store's own address: rule priority and patterns per tier.
INTERNAL_TIERS = frozenset({"app"})
FRONT_TIER = "web"
PATH_RULES: dict[str, tuple[int, tuple[str, ...]]] = {"bi": (10, ("/bi", "/bi/*"))}


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StartupError(TierlakeError):
    """A component could not start; the message names the fix."""


@dataclass
class TierPath:
    """One tier's slice of the traffic path: its balancer, target group and group."""

    tier: Tier
    balancer: LoadBalancer
    target_group: TargetGroup
    group: AutoScalingGroup
    policy: TargetTrackingPolicy
    observers: list[RequestObserver]

    @property
    def url(self) -> str:
        port = self.balancer.listeners[0].port
        host = self.balancer.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def target_group_settings(settings: Settings) -> TargetGroupSettings:
    """The configured profile (``lb.profile``) with the configured algorithm and slow start,
    checking the tiers' ``/health``."""
    profile = PROFILES[settings.lb.profile]
    return replace(profile, algorithm=settings.lb.algorithm,
                   slow_start_seconds=settings.lb.slow_start_seconds,
                   health_check=replace(profile.health_check, path="/health"))


def _loopback_address(host: str) -> str:
    """The address a client uses for ``host`` (an unspecified address means loopback)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return "127.0.0.1" if ip.is_unspecified else str(ip)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.metrics = MetricStore()
        self.db_cluster = db_cluster_for(settings, self.metrics)  # db_cluster.enabled
        self.settings = self.db_cluster.settings_for(settings) if self.db_cluster else settings
        settings = self.settings
        self.paths: dict[str, TierPath] = {}
        self.components: list[Component] = [self.db_cluster] if self.db_cluster else []
        tg_settings = target_group_settings(settings)
        tiers = start_order(TIERS.values())
        groups = {tier.name: TargetGroup(tier.name, tg_settings) for tier in tiers}
        for tier in tiers:  # dependency order: app and bi before web
            path = self._tier_path(tier, groups)
            self.paths[tier.name] = path
            self.components += [
                _Step(f"{tier.name} target group", path.target_group.start,
                      path.target_group.stop),
                _Step(f"{path.balancer.name} load balancer", self._starter(path),
                      self._stopper(path)),
            ]
        self.zone: HostedZone | None = None
        self.dns: DnsServer | None = None
        self.dns_checks = HealthChecks()
        if settings.dns.enabled:
            self.zone = self._zone()
            self.dns = DnsServer(settings.host if settings.host != "0.0.0.0" else "127.0.0.1",
                                 settings.dns.port, self.zone)
            self.components.append(_Step("DNS server", self._start_dns, self._stop_dns))
        from tierlake.fleet.api import ControlServer, create_control_app

        allowed = ("127.0.0.1", "localhost", "::1", "[::1]", settings.host)
        self.control = ControlServer(create_control_app(self, allowed_hosts=allowed),
                                     settings.host, settings.fleet.control_port)
        self.components.append(self.control)
        self.components.append(_Step("CloudWatch alarms", self._start_watch, self._stop_watch))
        self.scheduler = PipelineScheduler(  # its runs (processes) on the cluster's endpoints
            settings, env=self.db_cluster.environment if self.db_cluster else None)
        self.components.append(self.scheduler)
        if "bi" in self.paths:  # alerts checked once for every BI instance, and the catcher
            from tierlake.bi.notifications import BiNotifications

            self.components.append(BiNotifications(settings))
        self._started: list[Component] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- building --------------------------------------------------------------------------

    def _tier_path(self, tier: Tier, groups: dict[str, TargetGroup]) -> TierPath:
        s, fleet = self.settings, self.settings.fleet
        target_group = groups[tier.name]
        name = f"tierlake-{tier.name}"
        observers: list[RequestObserver] = [ElbMetrics(self.metrics, name, [target_group])]
        if s.lb.access_logs:
            observers.append(AccessLogWriter(s.resolved_access_logs_dir, name,
                                             rotate_seconds=s.lb.access_logs_rotate_seconds))
        rules = front_rules(groups) if tier.name == FRONT_TIER else []
        balancer = LoadBalancer(
            name, scheme="internal" if tier.name in INTERNAL_TIERS else "internet-facing",
            host=s.host,
            listeners=[Listener(tier.listener_port(s), rules, Forward.to(target_group))],
            observers=observers, idle_timeout=s.lb.idle_timeout_seconds,
            manage_target_groups=False)
        environment: dict[str, str] = {}
        if tier.calls:
            called, variable = tier.calls
            environment[variable] = self.paths[called].url
        elif self.db_cluster:  # the app tier: the cluster's writer and reader endpoints
            environment.update(self.db_cluster.environment)
        template = LaunchTemplate(
            tier.name, (sys.executable, "-m", "tierlake", "serve", tier.name, "--host", s.host,
                        "--port", "{port}"), environment, host=_loopback_address(s.host))
        low, high = getattr(fleet, f"{tier.name}_min"), getattr(fleet, f"{tier.name}_max")
        group = AutoScalingGroup(
            tier.name, template, min_size=low, max_size=high, desired_capacity=low,
            target_groups=[target_group], health_check_type=fleet.health_check_type,
            health_check_grace_period=fleet.health_check_grace_seconds,
            default_instance_warmup=fleet.instance_warmup_seconds,
            default_cooldown=fleet.cooldown_seconds, metrics=self.metrics)
        if tier.name in INTERNAL_TIERS:  # the app tier: as many requests per instance as it takes
            policy = TargetTrackingPolicy(
                group, f"{tier.name}-requests", "ALBRequestCountPerTarget",
                fleet.target_requests_per_target, resource_label=target_group.name,
                period=fleet.period_seconds)
        else:
            policy = TargetTrackingPolicy(
                group, f"{tier.name}-cpu", "ASGAverageCPUUtilization", fleet.target_cpu_percent,
                period=fleet.period_seconds)
        return TierPath(tier, balancer, target_group, group, policy, observers)

    def _zone(self) -> HostedZone:
        s = self.settings
        zone = HostedZone(s.dns.zone, health_checks=self.dns_checks,
                          alias_ttl=s.dns.ttl_seconds,
                          ns_address=_loopback_address(s.host))
        address = (_loopback_address(s.host),)
        web, app = self.paths["web"], self.paths["app"]

        def has_healthy(tg: TargetGroup) -> Callable[[], bool]:
            return lambda: tg.healthy_count > 0

        def record(name: str, rtype: str, values: tuple[str, ...]) -> Change:
            return Change("CREATE", ResourceRecordSet(f"{name}.{s.dns.zone}", rtype,
                                                      s.dns.ttl_seconds, values))

        def alias(name: str, path: TierPath) -> Change:
            return Change("CREATE", ResourceRecordSet(
                f"{name}.{s.dns.zone}", "A", alias_target=AliasTarget(
                    f"{path.balancer.name}.elb.{s.dns.zone}", True, address,
                    has_healthy(path.target_group))))

        changes = [
            alias("shop", web), alias("internal-app", app),
            record("_http._tcp.shop", "SRV", (f"0 1 {s.web_port} shop.{s.dns.zone}",)),
            record("_http._tcp.internal-app", "SRV",
                   (f"0 1 {s.app_port} internal-app.{s.dns.zone}",)),
            record("www", "CNAME", (f"shop.{s.dns.zone}",)),
        ]
        if "bi" in self.paths:
            changes += [alias("bi", self.paths["bi"]),
                        record("_http._tcp.bi", "SRV", (f"0 1 {s.bi_port} bi.{s.dns.zone}",))]
        zone.change(changes)
        return zone

    # -- starting and stopping ---------------------------------------------------------------

    def _starter(self, path: TierPath) -> Callable[[], Awaitable[None]]:
        async def start() -> None:
            try:
                await path.balancer.start()
            except OSError as exc:
                port, why = path.tier.listener_port(self.settings), os.strerror(exc.errno or 0)
                raise ConfigError(
                    f"port {port} on {self.settings.host} is unavailable (wanted by the "
                    f"{path.balancer.name} load balancer: {why}); stop the other process or "
                    f"choose another port with {path.tier.port_variable}=<port>") from exc
            await path.group.start()
            path.policy.attach()
            await self._wait_healthy(path)
        return start

    def _stopper(self, path: TierPath) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            await path.balancer.stop(DRAIN_SECONDS)  # in-flight requests finish first
            await path.group.stop()
            for observer in path.observers:
                if isinstance(observer, AccessLogWriter):
                    await observer.aclose()
        return stop

    async def _wait_healthy(self, path: TierPath) -> None:
        """Until the group's minimum is healthy behind its balancer; an instance that cannot
        start (its process exits) ends the wait with what its log said."""
        timeout = self.settings.control.start_timeout_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while path.target_group.healthy_count < path.group.min_size:
            failed = [a for a in path.group.activities if a.status_code == "Failed"]
            if len(failed) >= 3 or loop.time() > deadline:
                why = failed[0].status_message if failed else (
                    f"fewer than {path.group.min_size} healthy after {timeout:.0f} s")
                raise StartupError(
                    f"the {path.tier.name} tier did not start: {why}; its log lines above "
                    "say why")
            await asyncio.sleep(0.1)
        log.info("tier.ready", tier=path.tier.name, url=path.url,
                 healthy=path.target_group.healthy_count)

    async def _start_dns(self) -> None:
        assert self.dns is not None
        await self.dns_checks.start()
        try:
            await self.dns.start()
        except OSError as exc:
            raise ConfigError(f"{exc}; or set TIERLAKE_DNS__PORT=<port>, or "
                              "TIERLAKE_DNS__ENABLED=false") from exc

    async def _stop_dns(self) -> None:
        if self.dns is not None:
            await self.dns.stop()
        await self.dns_checks.stop()

    async def _start_watch(self) -> None:
        self._tasks.append(asyncio.create_task(self.metrics.run_alarms(), name="alarms"))
        for path in self.paths.values():
            for observer in path.observers:
                if isinstance(observer, ElbMetrics):
                    self._tasks.append(asyncio.create_task(observer.run_sampler(),
                                                           name=f"{path.balancer.name}-metrics"))
        if self.dns is not None:
            self._tasks.append(asyncio.create_task(self._sample_dns(), name="dns-metrics"))

    async def _sample_dns(self, interval: float = 1.0) -> None:
        """Route 53's CloudWatch metrics: ``DNSQueries`` per hosted zone (a count per
        sample) and, per health check, ``HealthCheckStatus`` (1 healthy, 0 not)."""
        assert self.dns is not None
        zone = {"HostedZoneId": self.settings.dns.zone}
        seen = 0
        while True:
            await asyncio.sleep(interval)
            total = sum(self.dns.counters.by_rcode.values())
            self.metrics.put("AWS/Route53", "DNSQueries", total - seen, dimensions=zone,
                             unit="Count")
            seen = total
            for check in self.dns_checks.list_health_checks():
                self.metrics.put("AWS/Route53", "HealthCheckStatus",
                                 1.0 if check.status == "Healthy" else 0.0,
                                 dimensions={"HealthCheckId": check.id}, unit="None")

    async def _stop_watch(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def url(self, tier: str) -> str:
        return self.paths[tier].url

    def banner_lines(self) -> list[str]:
        """What `tierlake up` adds to its banner for the tiers beyond web and app (plain text:
        no markup)."""
        if "bi" not in self.paths:
            return []
        fleet = self.settings.fleet
        return [f"BI (dashboards): {self.url(FRONT_TIER)}/bi/ (also {self.url('bi')}/bi/); "
                f"{fleet.bi_min}-{fleet.bi_max} instances; log in as the admin above"] + (
            [f"Mail catcher (reports and alerts): SMTP {self.settings.bi.smtp_host}:"
             f"{self.settings.bi.smtp_port}; what it caught: {self.url(FRONT_TIER)}/bi/mail"]
            if self.settings.bi.mail_catcher else [])

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start everything and supervise until SIGINT/SIGTERM (on uvloop when installed)."""
        try:
            import uvloop
        except ImportError:
            asyncio.run(self._main(on_ready))
        else:
            uvloop.run(self._main(on_ready))

    async def _main(self, on_ready: Callable[[], None] | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            starting = asyncio.create_task(self._start_all())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # raises a start-up failure
                if on_ready is not None:
                    on_ready()
                await stopped
            else:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                stopped.cancel()
        finally:
            await self._stop_all()

    async def _start_all(self) -> None:
        for component in self.components:
            self._started.append(component)
            await component.start()
            log.info("component.started", name=component.name)

    async def _stop_all(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others all the same
                log.error("component.stop_failed", name=component.name, error=str(exc))
            log.info("component.stopped", name=component.name)

    # -- the ControlPlane the operator's API drives ------------------------------------------

    def _group(self, name: str) -> AutoScalingGroup:
        if name not in self.paths:
            raise UnknownGroupError(name, list(self.paths))
        return self.paths[name].group

    def status(self) -> FleetStatus:
        groups, balancers, target_groups, activities = [], [], [], []
        for path in self.paths.values():
            groups.append(GroupView.model_validate(path.group.describe()))
            lb = path.balancer
            balancers.append(LoadBalancerView(
                load_balancer_name=lb.name, scheme=lb.scheme,
                dns_name=f"{lb.name}.elb.{self.settings.dns.zone}",
                listeners=[ListenerView(port=lst.port, host=lb.host) for lst in lb.listeners],
                target_group_names=[tg.name for tg in lb.target_groups]))
            tg = path.target_group
            in_flight = {t.id: (t.in_flight, t.weight) for t in tg.targets}
            rows = [{**row, "InFlight": in_flight.get(row["Target"]["Id"], (0, 1))[0],
                     "Weight": in_flight.get(row["Target"]["Id"], (0, 1))[1]}
                    for row in tg.describe()]
            target_groups.append(TargetGroupView.of(tg.name, tg.settings, rows))
            activities += [ActivityView.model_validate(a.to_dict())
                           for a in path.group.activities[:50]]
        if self.db_cluster:
            activities += [ActivityView.model_validate(a)
                           for a in self.db_cluster.activities()[-50:]]
        activities.sort(key=lambda a: a.start_time, reverse=True)
        dns = None
        if self.dns is not None:
            record_sets = self.dns.status()["record_sets"]
            assert isinstance(record_sets, list)
            dns = DnsView(hosted_zone=self.settings.dns.zone, host=self.dns.host,
                          port=self.dns.port,
                          records=[DnsRecordView.model_validate(r)
                                   for r in record_sets])
        return FleetStatus(
            auto_scaling_groups=groups, load_balancers=balancers, target_groups=target_groups,
            alarms=[AlarmView.of(a) for a in self.metrics.alarms.values()],
            activities=activities[:50], dns=dns, generated_at=datetime.now(UTC))

    async def scale(self, group: str, desired: int) -> ScalingResult:
        asg = self._group(group)
        before = asg.desired_capacity
        try:
            asg.set_desired_capacity(desired)
        except AutoScalingError as exc:
            raise InvalidParameterError(str(exc)) from exc
        return ScalingResult(auto_scaling_group_name=group, previous_desired_capacity=before,
                             desired_capacity=desired,
                             message=f"desired capacity of {group} set from {before} to "
                                     f"{desired}")

    async def kill(self, instance_id: str) -> KillResult:
        status = self.status()
        view, _ = status.instance(instance_id)  # UnknownInstanceError names the known ones
        inst = self._group(view.auto_scaling_group_name).get(instance_id)
        pid = inst.process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.warning("fleet.instance_killed", instance=instance_id, pid=pid)
        return KillResult(instance_id=instance_id,
                          auto_scaling_group_name=view.auto_scaling_group_name, pid=pid,
                          message=f"sent SIGKILL to {instance_id} (pid {pid}); its group "
                                  "replaces it")

    async def refresh(self, group: str, min_healthy_percentage: int) -> RefreshResult:
        asg = self._group(group)
        try:
            refresh = asg.start_instance_refresh(min_healthy_percentage=min_healthy_percentage)
        except AutoScalingError as exc:
            raise InvalidParameterError(str(exc)) from exc
        return RefreshResult(auto_scaling_group_name=group,
                             instance_refresh_id=refresh.refresh_id,
                             min_healthy_percentage=min_healthy_percentage,
                             message=f"instance refresh {refresh.refresh_id} of {group} "
                                     f"started (minimum healthy {min_healthy_percentage}%)")

    def metric_series(self) -> Iterable[MetricSeries]:
        return self.metrics.series()


def start_order(tiers: Iterable[Tier]) -> list[Tier]:
    """The tiers in the order they start: each after the tier it calls, and the front tier
    after the tiers its path rules forward to (its rules need their target groups)."""
    pending = list(tiers)
    names = {t.name for t in pending}
    needs = {t.name: ({t.calls[0]} if t.calls else set()) & names for t in pending}
    if FRONT_TIER in needs:
        needs[FRONT_TIER] |= set(PATH_RULES) & names
    order: list[Tier] = []
    while pending:
        ready = next((t for t in pending if needs[t.name] <= {o.name for o in order}), None)
        if ready is None:
            raise ConfigError(f"the tiers {[t.name for t in pending]} call each other in a "
                              "circle; fix the tier registry (tierlake.fleet.tiers)")
        order.append(ready)
        pending.remove(ready)
    return order


def front_rules(groups: dict[str, TargetGroup]) -> list[Rule]:
    """The front balancer's listener rules: each routed tier's path patterns forward to its
    target group (paths unchanged); what matches none goes to the front tier's group."""
    return [Rule(priority, [PathPattern(patterns)], Forward.to(groups[name]))
            for name, (priority, patterns) in sorted(PATH_RULES.items()) if name in groups]


class _Step:
    """A component made of a start and a stop coroutine."""

    def __init__(self, name: str, start: Callable[[], Awaitable[None]],
                 stop: Callable[[], Awaitable[None]]) -> None:
        self.name, self._start, self._stop = name, start, stop

    async def start(self) -> None:
        await self._start()

    async def stop(self) -> None:
        await self._stop()
