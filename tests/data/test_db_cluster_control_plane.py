"""The database cluster inside `tierlake up`'s control plane: it starts first, the app tier's
instances get its endpoints, its events join the activity history in RDS's words and
ReplicaLag goes to the CloudWatch metric store (AWS/RDS, DBInstanceIdentifier)."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

import servers
from db_clusters import require_mariadb
from tierlake.config import Settings
from tierlake.data.cluster import events
from tierlake.data.db import create_db_engine
from tierlake.data.migrate import upgrade
from tierlake.fleet.supervisor import Supervisor

pytestmark = pytest.mark.timeout(180)


def test_db_cluster_runs_in_the_control_plane_before_the_app_tier() -> None:
    require_mariadb()
    directory = servers.scratch_dir("up-cluster")
    settings = Settings(data_dir=directory, dns={"enabled": False},
                        db_cluster={"enabled": True, "writer_port": 0, "reader_port": 0,
                                    "check_interval": 0.3})
    supervisor = Supervisor(settings)
    component = supervisor.db_cluster
    assert component is not None and supervisor.components[0] is component
    cluster = component.cluster
    # The app tier (and the pipeline) use the endpoints, fixed before anything starts.
    env = supervisor.paths["app"].group.template.env(9999)
    assert env["TIERLAKE_DATABASE_URL"] == cluster.writer_url
    assert json.loads(env["TIERLAKE_DATABASE_REPLICA_URLS"]) == [cluster.reader_url]
    assert "TIERLAKE_DATABASE_URL" not in supervisor.paths["web"].group.template.environment
    assert supervisor.settings.resolved_database_url == cluster.writer_url
    assert supervisor.scheduler.settings.database_replica_urls == [cluster.reader_url]
    assert supervisor.scheduler.env == component.environment  # its runs are processes

    migrated: list[str] = []

    def migrate() -> None:  # what `tierlake up` runs once the cluster takes connections
        engine = create_db_engine(cluster.writer_url, pool_size=1)
        upgrade(engine)
        engine.dispose()
        migrated.append(cluster.primary_name)

    component.on_started = migrate

    async def scenario() -> tuple[list[str], list[float]]:
        await component.start()
        try:
            lags: list[float] = []
            # The sampler's first datum once replication runs: until the standby's threads
            # have connected it reads -1, as RDS reports a stopped replication.
            for _ in range(300):
                lags = [s.latest for s in supervisor.metrics.series()
                        if (s.namespace, s.name) == ("AWS/RDS", "ReplicaLag")
                        and s.dimensions == {"DBInstanceIdentifier": cluster.standby.name}]
                if lags and lags[0] >= 0.0:
                    break
                await asyncio.sleep(0.1)
            await cluster.failover()
            return [a.description for a in supervisor.status().activities], lags
        finally:
            await component.stop()

    try:
        activities, lags = asyncio.run(scenario())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert migrated == ["db-a"]
    assert lags and lags[0] >= 0.0
    # Newest first, as DescribeScalingActivities lists them.
    assert activities[0] == events.FAILOVER_COMPLETED
    assert set(activities[1:3]) == {events.FAILOVER_STARTED, events.USER_REQUESTED_FAILOVER}
    assert "DB cluster started" in activities
