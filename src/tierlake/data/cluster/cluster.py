"""An RDS Multi-AZ deployment on one machine: a MariaDB primary, its standby, two endpoints
and the monitor that fails over between them.

What RDS does and this keeps ("Multi-AZ DB instance deployments" and "Failover process for
Amazon RDS" in the RDS User Guide):

- synchronous standby: semi-synchronous GTID replication with the ``AFTER_SYNC`` wait point,
  so an acknowledged commit is on both servers (:mod:`.instance`);
- automatic failover: a monitor checks both servers every ``check_interval`` seconds
  (``SELECT 1``, and the process itself); after ``failure_threshold`` failed checks, or at
  once when the primary's process has exited, it fences the old primary, promotes the
  standby and moves the writer endpoint (:mod:`.endpoint`), recording RDS's events
  (:mod:`.events`);
- reboot with failover (``RebootDBInstance --force-failover``), here :meth:`DBCluster.failover`:
  a planned switch-over that holds new connections at the endpoint, lets the current ones
  finish, waits until the standby has applied the primary's last GTID, then switches;
- recovery: the failed server is started again (read-only) and rejoins as the new standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pymysql.converters import escape_string

from tierlake.data.cluster import events as ev
from tierlake.data.cluster.endpoint import Endpoint
from tierlake.data.cluster.instance import DBClusterError, MariaDBInstance

if TYPE_CHECKING:
    from tierlake.config import DbClusterConfig

log = structlog.get_logger(__name__)

STATE_FILE = "cluster.json"
INSTANCE_NAMES = ("db-a", "db-b")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


class DBCluster:
    """The cluster as one component of the control plane: ``start()``, ``stop()``,
    ``status()`` (a dict for the operator view) and ``failover()``.

    ``instance_ports`` are the servers' own ports (0: a free one); ``writer_port`` and
    ``reader_port`` the endpoints' (0: a free one). The app tier connects to the writer.
    """

    def __init__(self, directory: Path, *, writer_port: int = 0, reader_port: int = 0,
                 instance_ports: tuple[int, int] = (0, 0), identifier: str = "tierlake-db",
                 app_user: str = "app", app_password: str = "app", database: str = "appdb",
                 check_interval: float = 1.0, failure_threshold: int = 3,
                 auto_recover: bool = True, drain_timeout: float = 5.0,
                 hold_timeout: float = 30.0, semi_sync_timeout_ms: int = 10_000) -> None:
        if check_interval <= 0 or failure_threshold < 1:
            raise DBClusterError("check_interval must be > 0 and failure_threshold >= 1")
        for what, name in (("app_user", app_user), ("database", database)):
            if not _NAME.match(name):
                raise DBClusterError(f"{what} {name!r} is not a plain name: use letters, "
                                     "digits and _ (at most 32)")
        self.dir = directory
        self.identifier = identifier
        self.app_user, self.app_password, self.database = app_user, app_password, database
        self.check_interval = check_interval
        self.failure_threshold = failure_threshold
        self.auto_recover = auto_recover
        self.drain_timeout = drain_timeout
        self.events = ev.EventHistory()
        self.writer = Endpoint("writer", "127.0.0.1", writer_port, hold_timeout=hold_timeout)
        self.reader = Endpoint("reader", "127.0.0.1", reader_port, hold_timeout=hold_timeout)
        state = self._read_state()
        password = state.get("replication_password") or secrets.token_urlsafe(16)
        ports = state.get("ports") or list(instance_ports)
        self.instances = {
            name: MariaDBInstance(name, directory / name, int(ports[i]) or _free_port(),
                                  i + 1, replication_password=password,
                                  semi_sync_timeout_ms=semi_sync_timeout_ms)
            for i, name in enumerate(INSTANCE_NAMES)}
        self.primary_name: str = state.get("primary", INSTANCE_NAMES[0])
        self._failures = dict.fromkeys(self.instances, 0)
        self._described: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()  # one role change at a time
        self._monitor: asyncio.Task[None] | None = None
        self._recovering: set[str] = set()
        self._failed: set[str] = set()  # recovery failed: left stopped, status "failed"
        self._no_standby_reported = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_failover_seconds: float | None = None

    @classmethod
    def from_config(cls, directory: Path, config: DbClusterConfig) -> DBCluster:
        """The cluster the ``db_cluster`` settings describe (``tierlake db cluster up`` and
        ``tierlake up`` build it the same way)."""
        return cls(directory, writer_port=config.writer_port, reader_port=config.reader_port,
                   check_interval=config.check_interval,
                   failure_threshold=config.failure_threshold, auto_recover=config.auto_recover,
                   drain_timeout=config.drain_timeout, hold_timeout=config.hold_timeout,
                   semi_sync_timeout_ms=config.semi_sync_timeout_ms)

    # -- roles ---------------------------------------------------------------------------------

    @property
    def primary(self) -> MariaDBInstance:
        return self.instances[self.primary_name]

    @property
    def standby(self) -> MariaDBInstance:
        return next(i for n, i in self.instances.items() if n != self.primary_name)

    @property
    def writer_url(self) -> str:
        return (f"mysql+pymysql://{self.app_user}:{self.app_password}@127.0.0.1:"
                f"{self.writer.port}/{self.database}")

    @property
    def reader_url(self) -> str:
        return self.writer_url.replace(f":{self.writer.port}/", f":{self.reader.port}/")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start both servers (creating them on first use), replication, the endpoints and
        the monitor."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fresh = not self.primary.initialised
        for inst in self.instances.values():  # one bootstrap at a time: two at once can fail
            await asyncio.to_thread(inst.prepare)
        await asyncio.gather(*(asyncio.to_thread(i.start) for i in self.instances.values()))
        try:
            await asyncio.to_thread(self._set_up_roles, fresh)
            await self.writer.start()
            await self.reader.start()
        except BaseException:
            await self.stop()
            raise
        self.writer.release(("127.0.0.1", self.primary.port))
        self.reader.release(("127.0.0.1", self.standby.port))
        self._write_state()
        self.events.record(self.identifier, "DB cluster started", "notification",
                           source_type="db-cluster")
        self._monitor = asyncio.create_task(self._watch(), name="db-cluster-monitor")

    def _set_up_roles(self, fresh: bool) -> None:
        primary, standby = self.primary, self.standby
        if fresh:
            for inst in (primary, standby):
                inst.create_replication_user()
        standby.replicate_from(primary)
        problem = standby.wait_replicating(10.0)
        if problem:
            raise DBClusterError(f"{standby.name} cannot replicate from {primary.name}: "
                                 f"{problem}; see {standby.log_path}")
        primary.execute("SET GLOBAL read_only=OFF")
        primary.set_semi_sync_source(True)
        if fresh:
            user, password = self.app_user, escape_string(self.app_password)
            primary.execute(
                f"CREATE DATABASE IF NOT EXISTS `{self.database}`",
                f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
                f"GRANT ALL ON `{self.database}`.* TO '{user}'@'127.0.0.1'")

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.stop()
        await self.reader.stop()
        await asyncio.gather(*(asyncio.to_thread(i.stop) for i in self.instances.values()))

    # -- state file (which server is the primary survives a restart of `up`) ------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return state

    def _write_state(self) -> None:
        (self.dir / STATE_FILE).write_text(json.dumps({
            "primary": self.primary_name,
            "ports": [i.port for i in self.instances.values()],
            "replication_password": self.primary.replication_password}))

    # -- monitor -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                await self._check_once()
            except Exception:  # the monitor must outlive one bad round
                log.exception("db_cluster.monitor_error")
            await asyncio.sleep(self.check_interval)

    async def _check_once(self) -> None:
        results = await asyncio.gather(*(self._check(i) for i in self.instances.values()))
        for inst, healthy in zip(self.instances.values(), results, strict=True):
            self._failures[inst.name] = 0 if healthy else self._failures[inst.name] + 1
        primary = self.primary
        if not primary.running or self._failures[primary.name] >= self.failure_threshold:
            await self._fail_over()
            return
        standby = self.standby
        if not standby.running and self.reader.target != ("127.0.0.1", primary.port):
            # No replica to read from: the reader endpoint serves from the primary (as after
            # a failover) instead of holding its clients' connects.
            self.reader.release(("127.0.0.1", primary.port))
        if (self.auto_recover and not standby.running
                and standby.name not in self._recovering | self._failed):
            self._recovering.add(standby.name)
            task = asyncio.create_task(self._recover(standby), name=f"recover-{standby.name}")
            self._tasks.add(task)  # a reference, so the task is not collected
            task.add_done_callback(self._tasks.discard)

    async def _check(self, inst: MariaDBInstance) -> bool:
        if not inst.running:
            return False
        healthy = await asyncio.to_thread(inst.ping, min(self.check_interval, 1.0))
        if healthy:
            with contextlib.suppress(Exception):
                self._described[inst.name] = await asyncio.to_thread(inst.describe)
        return healthy

    async def _fail_over(self) -> None:
        """Unplanned failover: the primary died or stopped answering."""
        async with self._lock:
            old, new = self.primary, self.standby
            if not new.running:
                if not self._no_standby_reported:  # once, not every check
                    self._no_standby_reported = True
                    self.events.record(self.identifier, ev.FAILOVER_NOT_ATTEMPTED, "failover",
                                       source_type="db-cluster")
                return
            self._no_standby_reported = False
            started = time.monotonic()
            self.writer.hold()
            self.writer.close_connections()  # they lead to a dead server
            self.events.record(old.name, ev.FAILOVER_STARTED)
            self.events.record(old.name, ev.PRIMARY_IMPAIRED)
            # Fence: a hung primary is stopped for good; it restarts read-only.
            await asyncio.to_thread(old.kill, signal.SIGKILL)
            self.events.record(old.name, ev.INSTANCE_SHUTDOWN, "availability")
            await asyncio.to_thread(new.promote, 10.0)
            await asyncio.to_thread(new.set_semi_sync_source, False)  # no standby yet
            self.primary_name = new.name
            self._failures = dict.fromkeys(self.instances, 0)
            self._described.pop(old.name, None)
            self._write_state()
            self.writer.release(("127.0.0.1", new.port))
            self.reader.release(("127.0.0.1", new.port))  # no replica to read from
            self.last_failover_seconds = time.monotonic() - started
            self.events.record(new.name, ev.FAILOVER_COMPLETED)

    async def _recover(self, inst: MariaDBInstance) -> None:
        """Start a dead server again and make it the standby of the current primary."""
        try:
            async with self._lock:
                self.events.record(inst.name, ev.RECOVERY_STARTED, "recovery")
                await asyncio.to_thread(inst.start)
                self.events.record(inst.name, ev.INSTANCE_RESTARTED, "availability")
                await self._attach_standby(inst)
                self.events.record(inst.name, ev.RECOVERY_COMPLETED, "recovery")
        except Exception as exc:  # noqa: BLE001 - recorded; an operator decides what next
            log.error("db_cluster.recovery_failed", instance=inst.name, error=str(exc))
            self.events.record(inst.name, ev.RECOVERY_FAILED, "failure")
            self._failed.add(inst.name)  # not restarted again and again
            await asyncio.to_thread(inst.stop)
        finally:
            self._recovering.discard(inst.name)

    async def _attach_standby(self, inst: MariaDBInstance) -> None:
        """Make ``inst`` the standby: from its own GTID position, or, when its history has
        diverged from the primary's, from a fresh copy of the primary."""
        primary = self.primary
        await asyncio.to_thread(inst.replicate_from, primary)
        problem = await asyncio.to_thread(inst.wait_replicating, 10.0)
        if problem:
            log.warning("db_cluster.rejoin_diverged", instance=inst.name, error=problem)
            self.events.record(inst.name, ev.REPLICATION_ERROR, "read replica")
            await asyncio.to_thread(inst.rebuild_from, primary)
            problem = await asyncio.to_thread(inst.wait_replicating, 10.0)
        if problem:
            raise DBClusterError(f"{inst.name} cannot replicate from {primary.name}: {problem}")
        await asyncio.to_thread(primary.set_semi_sync_source, True)
        self.reader.release(("127.0.0.1", inst.port))

    # -- planned failover ----------------------------------------------------------------------

    async def failover(self) -> dict[str, Any]:
        """Reboot with failover: switch the roles with no failed statement for clients that
        connect per unit of work (connections still open after ``drain_timeout`` are
        closed). Returns what happened, for the CLI."""
        async with self._lock:
            old, new = self.primary, self.standby
            self.events.record(old.name, ev.USER_REQUESTED_FAILOVER)
            if not (new.running and await asyncio.to_thread(new.ping, 1.0)):
                self.events.record(self.identifier, ev.FAILOVER_NOT_ATTEMPTED, "failover",
                                   source_type="db-cluster")
                raise DBClusterError(
                    f"no standby to fail over to ({new.name} is not running); wait for its "
                    "recovery (`tierlake db cluster status`) and try again")
            started = time.monotonic()
            self.events.record(old.name, ev.FAILOVER_STARTED)
            self.writer.hold()
            still_open = await self.writer.drain(self.drain_timeout)
            self.writer.close_connections()
            try:
                await asyncio.to_thread(old.execute, "SET GLOBAL read_only=ON")  # fence
                position = (await asyncio.to_thread(old.describe))["gtid_binlog_pos"]
                if not await asyncio.to_thread(new.wait_for_gtid, position, 30.0):
                    raise DBClusterError(f"{new.name} did not apply {position} within 30s")
                await asyncio.to_thread(new.promote, 10.0)
            except BaseException:
                await asyncio.to_thread(old.execute, "SET GLOBAL read_only=OFF")
                self.writer.release(("127.0.0.1", old.port))
                raise
            self.primary_name = new.name
            self._write_state()
            self.writer.release(("127.0.0.1", new.port))
            switched = time.monotonic() - started
            try:
                await self._attach_standby(old)
            except DBClusterError as exc:
                log.warning("db_cluster.standby_not_attached", instance=old.name,
                            error=str(exc))
                self.events.record(old.name, ev.REPLICATION_ERROR, "read replica")
            self.last_failover_seconds = switched
            self.events.record(new.name, ev.FAILOVER_COMPLETED)
            return {"old_primary": old.name, "new_primary": new.name,
                    "seconds": round(switched, 3), "connections_closed": still_open}

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The operator view: roles, GTID positions, ReplicaLag, endpoints, events."""
        instances = []
        for name, inst in self.instances.items():
            described = self._described.get(name, {}) if inst.running else {}
            replication = described.get("replication") or {}
            lag = replication.get("seconds_behind_master")
            role = "primary" if name == self.primary_name else "standby"
            if not inst.running:
                db_status = "failed" if name != self.primary_name else "failing-over"
            elif name in self._recovering:
                db_status = "rebooting"
            else:
                db_status = "available"
            instances.append({
                "DBInstanceIdentifier": name, "Role": role, "DBInstanceStatus": db_status,
                "Port": inst.port, "Pid": inst.pid,
                "GtidCurrentPos": described.get("gtid_current_pos", ""),
                "ReadOnly": described.get("read_only"),
                "ReplicaLag": float(lag) if lag is not None else None,
                "Replication": replication or None})
        return {
            "DBClusterIdentifier": self.identifier, "Engine": "mariadb",
            "Endpoint": {"port": self.writer.port, "target": _addr(self.writer.target),
                         "held": self.writer.held, "connections": self.writer.connections},
            "ReaderEndpoint": {"port": self.reader.port, "target": _addr(self.reader.target),
                               "connections": self.reader.connections},
            "WriterUrl": self.writer_url, "ReaderUrl": self.reader_url,
            "Primary": self.primary_name, "DBClusterMembers": instances,
            "LastFailoverSeconds": self.last_failover_seconds,
            "Events": self.events.to_list()}


def _addr(target: tuple[str, int] | None) -> str | None:
    return f"{target[0]}:{target[1]}" if target else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
