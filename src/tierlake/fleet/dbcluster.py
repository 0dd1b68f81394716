"""The database cluster as a component of `tierlake up` (RDS Multi-AZ's place in the system).

When ``db_cluster.enabled``, the control plane starts the cluster (:class:`DBCluster`: a
MariaDB primary, its semi-synchronous standby, the writer and reader endpoints, the failover
monitor) before the app tier, and the app tier's instances get the writer endpoint as
``TIERLAKE_DATABASE_URL`` and the reader endpoint as ``TIERLAKE_DATABASE_REPLICA_URLS``; so
does the pipeline the control plane schedules. The endpoints' ports are fixed before
anything starts (a configured port, or a free one chosen then), so those URLs are known when
the launch templates are built, and they stay the same through failovers: the endpoints
follow the primary, the instances never need new settings.

What the operator sees, as on AWS:

- the cluster's events, worded as RDS words them ("Multi-AZ instance failover started." ...),
  in the control plane's activity history next to the Auto Scaling groups' activities;
- ``ReplicaLag`` (seconds; ``Seconds_Behind_Master``, and -1 when replication is not
  active, as RDS reports it) per standby in the control plane's CloudWatch metric store,
  namespace ``AWS/RDS``, dimension ``DBInstanceIdentifier`` ("Monitoring MariaDB read
  replicas" in the RDS User Guide);
- ``tierlake db cluster status`` and ``tierlake db failover`` work under `tierlake up` too
  (the cluster's control socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

import structlog

from tierlake.config import Settings
from tierlake.data.cluster import CONTROL_SOCKET, DBCluster, serve_control
from tierlake.ops.cloudwatch import MetricStore

log = structlog.get_logger(__name__)
CLUSTER_DIR = "db-cluster"


class DbClusterComponent:
    """``start()`` / ``stop()`` for the supervisor; ``on_started`` (e.g. migrate and seed
    the store) runs in a thread once the writer endpoint takes connections, before the app
    tier starts."""

    name = "database cluster"

    def __init__(self, settings: Settings, metrics: MetricStore) -> None:
        config = settings.db_cluster
        config = config.model_copy(update={
            "writer_port": config.writer_port or _free_port(),
            "reader_port": config.reader_port or _free_port()})
        self.directory = settings.data_dir / CLUSTER_DIR
        self.cluster = DBCluster.from_config(self.directory, config)
        self.metrics = metrics
        self.interval = config.check_interval
        self.on_started: Callable[[], None] | None = None
        self._control: asyncio.AbstractServer | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def environment(self) -> dict[str, str]:
        """What the app tier's launch template adds to its instances' environment."""
        return {"TIERLAKE_DATABASE_URL": self.cluster.writer_url,
                "TIERLAKE_DATABASE_REPLICA_URLS": json.dumps([self.cluster.reader_url])}

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` with the store's database on the cluster's endpoints."""
        return settings.model_copy(update={"database_url": self.cluster.writer_url,
                                           "database_replica_urls": [self.cluster.reader_url]})

    async def start(self) -> None:
        await self.cluster.start()
        self._control = await serve_control(self.cluster, self.directory / CONTROL_SOCKET)
        self._sampler = asyncio.create_task(self._sample(), name="db-cluster-metrics")
        log.info("db_cluster.ready", writer=self.cluster.writer.port,
                 reader=self.cluster.reader.port, primary=self.cluster.primary_name)
        if self.on_started is not None:
            await asyncio.to_thread(self.on_started)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            (self.directory / CONTROL_SOCKET).unlink(missing_ok=True)
        await self.cluster.stop()

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.put_metrics()

    def put_metrics(self) -> None:
        """One ``ReplicaLag`` datum per running standby."""
        for member in self.cluster.status()["DBClusterMembers"]:
            if member["Role"] != "standby" or member["DBInstanceStatus"] != "available":
                continue
            lag = member["ReplicaLag"]
            self.metrics.put("AWS/RDS", "ReplicaLag", -1.0 if lag is None else float(lag),
                             dimensions={"DBInstanceIdentifier": member["DBInstanceIdentifier"]},
                             unit="Seconds")

    def activities(self) -> list[dict[str, Any]]:
        """The cluster's events as items of the control plane's activity history (the keys
        of ``DescribeScalingActivities``; the message is RDS's own)."""
        items = []
        for i, event in enumerate(self.cluster.events.to_list()):
            categories = ", ".join(event["EventCategories"])
            items.append({
                "ActivityId": f"rds-event-{i}-{event['Date']}",
                "AutoScalingGroupName": event["SourceIdentifier"],
                "Description": event["Message"],
                "Cause": f"At {event['Date'][:19]}Z Amazon RDS recorded a {categories} event "
                         f"for {event['SourceType']} {event['SourceIdentifier']}.",
                "StartTime": event["Date"], "EndTime": event["Date"],
                "StatusCode": "Successful", "Progress": 100})
        return items


def db_cluster_for(settings: Settings, metrics: MetricStore) -> DbClusterComponent | None:
    """The cluster component when ``db_cluster.enabled``, else None."""
    return DbClusterComponent(settings, metrics) if settings.db_cluster.enabled else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
