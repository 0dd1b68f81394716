"""RDS Multi-AZ failover on real MariaDB servers: SIGKILL the primary under a stream of
writes, a planned failover, the old primary rejoining as the standby.

The cluster runs on its own event loop in a thread (as it would inside the control plane);
the writes are a real client through the writer endpoint (:class:`WriteStream`).
"""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from db_clusters import RunningCluster, running_cluster, wait_until
from tierlake.data.cluster import DBClusterError, events
from tierlake.data.cluster.probe import WriteStream, read_request_ids

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def db_cluster() -> Iterator[RunningCluster]:
    with running_cluster(check_interval=0.5) as running:
        yield running


def start_stream(running: RunningCluster, **kwargs: Any) -> WriteStream:
    stream = WriteStream("127.0.0.1", running.cluster.writer.port, **kwargs)
    stream.create_table()
    stream.start()
    wait_until("the first 30 writes are acknowledged", lambda: stream.count >= 30)
    return stream


def assert_exactly_once(running: RunningCluster, acknowledged: list[int]) -> None:
    ids = read_request_ids("127.0.0.1", running.cluster.writer.port)
    duplicated = [i for i, n in collections.Counter(ids).items() if n > 1]
    missing = sorted(set(acknowledged) - set(ids))
    assert not missing, f"acknowledged writes lost: {missing[:20]}"
    assert not duplicated, f"writes applied twice: {duplicated[:20]}"


def test_db_cluster_sigkill_primary_loses_no_acknowledged_write(
        db_cluster: RunningCluster) -> None:
    old = db_cluster.cluster.primary_name
    stream = start_stream(db_cluster)
    pid = db_cluster.member(old)["Pid"]
    os.kill(pid, signal.SIGKILL)
    killed = stream.mark()
    wait_until("writes resume after the kill", lambda: killed in stream.info.first_ack_after)
    acked_at_resume = stream.count
    wait_until("30 more writes after resuming", lambda: stream.count >= acked_at_resume + 30)
    info = stream.stop()

    assert db_cluster.cluster.primary_name != old
    assert_exactly_once(db_cluster, info.acknowledged)
    messages = db_cluster.status()["Events"]
    assert [e["Message"] for e in messages if e["SourceIdentifier"] == old][:2] == [
        events.FAILOVER_STARTED, events.PRIMARY_IMPAIRED]
    assert events.FAILOVER_COMPLETED in [e["Message"] for e in messages]
    print(f"\nkill -> first successful write: {info.first_ack_after[killed]:.2f} s "
          f"({info.failed_attempts} failed attempt(s), {len(info.acknowledged)} writes)")


def test_db_cluster_planned_failover_has_no_failed_write(db_cluster: RunningCluster) -> None:
    old = db_cluster.cluster.primary_name
    stream = start_stream(db_cluster, connection_per_write=True)
    result = db_cluster.call(db_cluster.cluster.failover())
    count = stream.count
    wait_until("30 more writes after the failover", lambda: stream.count >= count + 30)
    info = stream.stop()

    assert result["old_primary"] == old
    assert db_cluster.cluster.primary_name == result["new_primary"] != old
    assert info.failed_attempts == 0, info.errors
    assert_exactly_once(db_cluster, info.acknowledged)
    messages = [e["Message"] for e in db_cluster.status()["Events"]]
    assert messages[-3:] == [events.USER_REQUESTED_FAILOVER, events.FAILOVER_STARTED,
                             events.FAILOVER_COMPLETED]
    # The old primary is the standby at once, replicating the new primary.
    wait_until(f"{old} replicates the new primary",
               lambda: (db_cluster.member(old)["Replication"] or {}).get("sql_running") == "Yes")


def test_db_cluster_old_primary_rejoins_as_standby(db_cluster: RunningCluster) -> None:
    cluster = db_cluster.cluster
    old = cluster.primary_name
    stream = start_stream(db_cluster, limit=40)
    wait_until("40 writes", lambda: stream.count >= 40)
    os.kill(db_cluster.member(old)["Pid"], signal.SIGKILL)
    wait_until(f"{old} is back as a replicating standby", lambda: (
        db_cluster.member(old)["DBInstanceStatus"] == "available"
        and (db_cluster.member(old)["Replication"] or {}).get("sql_running") == "Yes"))
    stream.stop()
    assert cluster.primary_name != old
    assert db_cluster.member(old)["Role"] == "standby"
    # A write on the new primary reaches the old one, read through the reader endpoint.
    with pymysql.connect(host="127.0.0.1", port=cluster.writer.port, user="app",
                         password="app", database="appdb", autocommit=True) as conn:
        conn.cursor().execute("INSERT INTO failover_probe (request_id) VALUES (1000001)")
    old_address = f"127.0.0.1:{cluster.instances[old].port}"
    assert db_cluster.status()["ReaderEndpoint"]["target"] == old_address
    wait_until("the write is on the rejoined standby", lambda: 1000001 in read_request_ids(
        "127.0.0.1", cluster.reader.port))
    # Fenced: the old primary takes no writes from the app.
    with (pymysql.connect(host="127.0.0.1", port=cluster.reader.port, user="app",
                          password="app", database="appdb", autocommit=True) as conn,
          pytest.raises(pymysql.err.OperationalError, match="read-only")):
        conn.cursor().execute("INSERT INTO failover_probe (request_id) VALUES (1000002)")
    messages = [e["Message"] for e in db_cluster.status()["Events"]
                if e["SourceIdentifier"] == old]
    assert messages[-2:] == [events.INSTANCE_RESTARTED, events.RECOVERY_COMPLETED]


@pytest.fixture
def async_fallback_cluster() -> Iterator[RunningCluster]:
    """A cluster whose primary waits only 0.3 s for its standby before committing alone
    (MariaDB's semi-synchronous fallback), so a test can make the histories diverge."""
    with running_cluster(check_interval=0.5, semi_sync_timeout_ms=300) as running:
        yield running


def test_db_cluster_diverged_old_primary_is_rebuilt_from_the_new_one(
        async_fallback_cluster: RunningCluster) -> None:
    running = async_fallback_cluster
    cluster = running.cluster
    old, standby = cluster.primary_name, cluster.standby.name

    def write(request_id: int) -> None:
        with pymysql.connect(host="127.0.0.1", port=cluster.writer.port, user="app",
                             password="app", database="appdb", autocommit=True) as conn:
            conn.cursor().execute("INSERT INTO failover_probe (request_id) VALUES (%s)",
                                  (request_id,))

    WriteStream("127.0.0.1", cluster.writer.port).create_table()
    write(1)
    wait_until("the standby has row 1", lambda: 1 in read_request_ids("127.0.0.1",
                                                                       cluster.reader.port))
    cluster.instances[standby].execute("STOP SLAVE")  # the standby stops receiving
    write(2)  # committed on the primary alone, after the semi-synchronous timeout
    os.kill(running.member(old)["Pid"], signal.SIGKILL)
    wait_until(f"{standby} is the primary", lambda: cluster.primary_name == standby)
    wait_until(f"{old} is back as a replicating standby", lambda: (
        running.member(old)["DBInstanceStatus"] == "available"
        and (running.member(old)["Replication"] or {}).get("sql_running") == "Yes"))

    messages = [e["Message"] for e in running.status()["Events"] if e["SourceIdentifier"] == old]
    assert events.REPLICATION_ERROR in messages  # its own position could not be used
    assert messages[-1] == events.RECOVERY_COMPLETED
    write(3)
    # The rebuilt standby is a copy of the new primary: row 2 existed only on the old one.
    wait_until("row 3 reaches the rebuilt standby",
               lambda: 3 in read_request_ids("127.0.0.1", cluster.reader.port))
    assert read_request_ids("127.0.0.1", cluster.reader.port) == [1, 3]
    assert read_request_ids("127.0.0.1", cluster.writer.port) == [1, 3]


def test_db_cluster_without_a_standby_does_not_fail_over() -> None:
    with running_cluster(check_interval=0.2, auto_recover=False) as running:
        cluster = running.cluster
        old, standby = cluster.primary_name, cluster.standby.name
        os.kill(running.member(standby)["Pid"], signal.SIGKILL)
        wait_until(f"{standby} is seen down",
                   lambda: running.member(standby)["DBInstanceStatus"] == "failed")
        with pytest.raises(DBClusterError, match="no standby to fail over to"):
            running.call(cluster.failover())
        os.kill(running.member(old)["Pid"], signal.SIGKILL)
        wait_until("the monitor says why it does not fail over", lambda: (
            [e["Message"] for e in running.status()["Events"]].count(
                events.FAILOVER_NOT_ATTEMPTED) == 2))
        assert cluster.primary_name == old


def test_db_cluster_reader_endpoint_serves_from_the_primary_while_the_standby_is_down(
        ) -> None:
    with running_cluster(check_interval=0.2, auto_recover=False) as running:
        cluster = running.cluster
        WriteStream("127.0.0.1", cluster.writer.port).create_table()
        with pymysql.connect(host="127.0.0.1", port=cluster.writer.port, user="app",
                             password="app", database="appdb", autocommit=True) as conn:
            conn.cursor().execute("INSERT INTO failover_probe (request_id) VALUES (7)")
        os.kill(running.member(cluster.standby.name)["Pid"], signal.SIGKILL)
        primary = f"127.0.0.1:{cluster.primary.port}"
        wait_until("the reader endpoint points at the primary",
                   lambda: running.status()["ReaderEndpoint"]["target"] == primary)
        # A reader connects at once (not held until the standby returns) and sees the data.
        assert read_request_ids("127.0.0.1", cluster.reader.port) == [7]
