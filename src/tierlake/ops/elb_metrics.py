"""The load balancers' CloudWatch metrics (``AWS/ApplicationELB``), from every request.

:class:`ElbMetrics` is a :class:`~tierlake.edge.lb.model.RequestObserver`: the balancer tells
it of each finished request and it publishes, with ALB's metric names and units,
``RequestCount``, ``TargetResponseTime`` (seconds, only for requests a target answered),
``HTTPCode_Target_2XX_Count`` ... ``5XX`` (the target's code), ``HTTPCode_ELB_3XX_Count``
... ``5XX`` and ``HTTPCode_ELB_502/503/504_Count`` (answers the balancer made itself),
``ProcessedBytes``; by ``LoadBalancer``, and by ``TargetGroup`` (with and without
``LoadBalancer``) where a target group served the request. :meth:`ElbMetrics.sample` adds,
per target group and period, ``HealthyHostCount``, ``UnHealthyHostCount`` and
``RequestCountPerTarget`` (the target group's requests in the period divided by its healthy
targets, or by all its targets when none is healthy, as ALB computes it). Sum
``RequestCountPerTarget`` over any period is then requests per target in that period,
whatever the sampling interval.

AWS documentation followed: "CloudWatch metrics for your Application Load Balancer"
(metric names, dimensions, statistics, units).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import structlog

from tierlake.edge.lb.model import AccessLogEntry
from tierlake.ops.cloudwatch import MetricStore

log = structlog.get_logger(__name__)
NAMESPACE = "AWS/ApplicationELB"


class SampledTargetGroup(Protocol):
    """What the sampler reads of a target group (``tierlake.edge.lb.targets.TargetGroup``)."""

    @property
    def name(self) -> str: ...

    @property
    def healthy_count(self) -> int: ...

    @property
    def unhealthy_count(self) -> int: ...

    @property
    def targets(self) -> Sequence[object]: ...


class ElbMetrics:
    """Publishes one load balancer's metrics into a :class:`MetricStore`."""

    def __init__(self, store: MetricStore, load_balancer_name: str,
                 target_groups: Sequence[SampledTargetGroup] = ()) -> None:
        self.store = store
        self.load_balancer = load_balancer_name
        self.target_groups = list(target_groups)
        self._requests: Counter[str] = Counter()  # per target group since the last sample

    def _dims(self, target_group: str | None) -> list[dict[str, str]]:
        lb = {"LoadBalancer": self.load_balancer}
        if not target_group or target_group == "-":
            return [lb]
        return [lb, {"LoadBalancer": self.load_balancer, "TargetGroup": target_group},
                {"TargetGroup": target_group}]

    def request_done(self, entry: AccessLogEntry) -> None:
        put = self.store.put
        ts = entry.time
        tg = entry.target_group if entry.target_group not in ("", "-") else None
        if tg is not None:
            self._requests[tg] += 1
        for dims in self._dims(tg):
            put(NAMESPACE, "RequestCount", 1.0, dimensions=dims, unit="Count", timestamp=ts)
            put(NAMESPACE, "ProcessedBytes", float(entry.received_bytes + entry.sent_bytes),
                dimensions=dims, unit="Bytes", timestamp=ts)
            if entry.target_status_code is not None:
                put(NAMESPACE, f"HTTPCode_Target_{entry.target_status_code // 100}XX_Count",
                    1.0, dimensions=dims, unit="Count", timestamp=ts)
                if entry.target_processing_time >= 0:
                    put(NAMESPACE, "TargetResponseTime", entry.target_processing_time,
                        dimensions=dims, unit="Seconds", timestamp=ts)
            elif entry.elb_status_code is not None:
                code = entry.elb_status_code
                if 300 <= code < 600:
                    put(NAMESPACE, f"HTTPCode_ELB_{code // 100}XX_Count", 1.0,
                        dimensions=dims, unit="Count", timestamp=ts)
                if code in (500, 502, 503, 504):
                    put(NAMESPACE, f"HTTPCode_ELB_{code}_Count", 1.0, dimensions=dims,
                        unit="Count", timestamp=ts)

    def sample(self, timestamp: float | None = None) -> None:
        """Publish the target groups' host counts and requests per target since the last
        sample."""
        for tg in self.target_groups:
            requests = self._requests.pop(tg.name, 0)
            healthy, unhealthy = tg.healthy_count, tg.unhealthy_count
            divisor = healthy or len(tg.targets)
            per_target = requests / divisor if divisor else float(requests)
            dims = {"LoadBalancer": self.load_balancer, "TargetGroup": tg.name}
            for name, value in (("HealthyHostCount", healthy),
                                ("UnHealthyHostCount", unhealthy)):
                self.store.put(NAMESPACE, name, float(value), dimensions=dims, unit="Count",
                               timestamp=timestamp)
            self.store.put(NAMESPACE, "RequestCountPerTarget", per_target,
                           dimensions={"TargetGroup": tg.name}, unit="Count",
                           timestamp=timestamp)

    async def run_sampler(self, interval: float = 1.0) -> None:
        """Sample every ``interval`` seconds, forever (cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.sample()
            except Exception:  # a sampler that stops would freeze the scaling alarms
                log.exception("elb_metrics.sample_failed", load_balancer=self.load_balancer)
