"""The load balancer's CloudWatch metrics: per-request counts, codes and response times,
and the target groups' host counts and requests per target (a real TargetGroup checking
real servers)."""

from __future__ import annotations

import asyncio

import pytest
from fleet_helpers import fast_target_group, until

from tierlake.edge.lb.model import AccessLogEntry
from tierlake.ops.cloudwatch import MetricStore
from tierlake.ops.elb_metrics import ElbMetrics

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
T0 = 1_796_112_000.0
NS = "AWS/ApplicationELB"


def _entry(t: float, *, elb: int | None, target: int | None, tg: str = "app-tg",
           took: float = 0.01) -> AccessLogEntry:
    return AccessLogEntry(
        type="http", time=t, elb="internal", client=("127.0.0.1", 5000),
        target=("127.0.0.1", 6000) if target is not None else None,
        request_processing_time=0.0, target_processing_time=took if target is not None else -1,
        response_processing_time=0.0, elb_status_code=elb, target_status_code=target,
        received_bytes=100, sent_bytes=900, request="GET http://x:80/ HTTP/1.1",
        user_agent="test", target_group=tg, trace_id="Root=1-0-0", domain_name="x",
        matched_rule_priority="0", request_creation_time=t, actions_executed=["forward"])


def _sum(store: MetricStore, name: str, dims: dict[str, str], stat: str = "Sum") -> float:
    points = store.statistics(NS, name, dims, period=60, start=T0, end=T0 + 60, stat=stat)
    return points[0].value if points else 0.0


def test_request_metrics_by_load_balancer_and_target_group() -> None:
    store = MetricStore(clock=lambda: T0 + 30)
    metrics = ElbMetrics(store, "internal")
    for i, (elb, target, took) in enumerate([(200, 200, 0.010), (200, 200, 0.030),
                                             (404, 404, 0.020), (500, 500, 0.040),
                                             (502, None, 0.0), (503, None, 0.0)]):
        metrics.request_done(_entry(T0 + i, elb=elb, target=target, took=took,
                                    tg="-" if elb == 503 else "app-tg"))
    lb = {"LoadBalancer": "internal"}
    both = {"LoadBalancer": "internal", "TargetGroup": "app-tg"}
    assert _sum(store, "RequestCount", lb) == 6
    assert _sum(store, "RequestCount", both) == 5  # the 503 had no target group
    assert _sum(store, "RequestCount", {"TargetGroup": "app-tg"}) == 5
    assert _sum(store, "HTTPCode_Target_2XX_Count", lb) == 2
    assert _sum(store, "HTTPCode_Target_4XX_Count", lb) == 1
    assert _sum(store, "HTTPCode_Target_5XX_Count", lb) == 1
    assert _sum(store, "HTTPCode_ELB_5XX_Count", lb) == 2
    assert _sum(store, "HTTPCode_ELB_502_Count", lb) == 1
    assert _sum(store, "HTTPCode_ELB_503_Count", lb) == 1
    assert _sum(store, "TargetResponseTime", lb, "Average") == pytest.approx(0.025)
    assert _sum(store, "TargetResponseTime", lb, "Maximum") == pytest.approx(0.040)
    assert _sum(store, "TargetResponseTime", lb, "SampleCount") == 4  # only answered ones
    units = {(s.name, s.unit) for s in store.series()}
    assert ("TargetResponseTime", "Seconds") in units and ("RequestCount", "Count") in units


async def _health_server() -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline() not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_host_counts_and_requests_per_target() -> None:
    tg = fast_target_group("app-tg")
    servers = [await _health_server() for _ in range(2)]
    await tg.start()
    try:
        for k, server in enumerate(servers):
            tg.register(f"i-{k}", "127.0.0.1", server.sockets[0].getsockname()[1])
        tg.register("i-dead", "127.0.0.1", 1)  # nothing listens on port 1
        await until(lambda: tg.healthy_count == 2 and tg.unhealthy_count == 1,
                    what="two healthy targets and one unhealthy")
        store = MetricStore()
        metrics = ElbMetrics(store, "internal", [tg])
        now = store.clock()
        for _ in range(10):
            metrics.request_done(_entry(now, elb=200, target=200))
        metrics.sample(now)
        metrics.sample(now + 1)  # nothing since: zero per target
        dims = {"LoadBalancer": "internal", "TargetGroup": "app-tg"}
        span = dict(period=10.0, start=now - 1, end=now + 9)
        per_target = store.statistics(NS, "RequestCountPerTarget", {"TargetGroup": "app-tg"},
                                      stat="Sum", **span)  # type: ignore[arg-type]
        assert per_target[0].value == 5.0 and per_target[0].sample_count == 2
        assert store.statistics(NS, "HealthyHostCount", dims, stat="Minimum",
                                **span)[0].value == 2.0  # type: ignore[arg-type]
        assert store.statistics(NS, "UnHealthyHostCount", dims, stat="Maximum",
                                **span)[0].value == 1.0  # type: ignore[arg-type]
    finally:
        await tg.stop()
        for server in servers:
            server.close()
