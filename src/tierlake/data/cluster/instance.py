"""One MariaDB server of the cluster: its data directory, its process, its replication.

An RDS Multi-AZ DB instance is a primary and a standby that RDS alone starts, stops and
re-points; here each is a ``mariadbd`` child process on a loopback port with its own data
directory. Every instance starts **read-only** and with its replica threads stopped
(``--read-only --skip-slave-start``): only the cluster turns a server into the writer, so a
crashed primary that comes back cannot take writes before the cluster has made it a replica
(fencing). Replication is GTID-based and semi-synchronous with the ``AFTER_SYNC`` wait point
(MariaDB's "lossless" mode): a commit is acknowledged to the client only once the replica has
the transaction in its relay log. The calls here block; the cluster runs them in a thread.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import structlog

from tierlake.errors import TierlakeError

log = structlog.get_logger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
REPLICATION_USER = "repl"
_DUMP_GTID = re.compile(rb"gtid_slave_pos\s*=\s*'([0-9,-]*)'")
_prctl = ctypes.CDLL(None, use_errno=True).prctl


class DBClusterError(TierlakeError, RuntimeError):
    """The database cluster cannot do what was asked; the message says why and what to do."""


def _die_with_parent() -> None:
    # The server gets SIGTERM when the process that started it dies, so a killed
    # `tierlake db cluster up` (or test) leaves no server behind.
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not path:
        raise DBClusterError(f"{name} not found: the database cluster needs MariaDB's server. "
                             "Install it with: apt-get install -y mariadb-server")
    return path


def _tail(path: Path, lines: int = 20) -> str:
    """The log's ERROR lines, else its last ``lines`` (mariadb-install-db ends with help)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if "ERROR" in line]
    return "\n".join(errors[-lines:] or text[-lines:])


class MariaDBInstance:
    """A MariaDB server in ``directory`` listening on ``127.0.0.1:port``."""

    def __init__(self, name: str, directory: Path, port: int, server_id: int, *,
                 replication_password: str, semi_sync_timeout_ms: int = 10_000) -> None:
        self.name = name
        self.dir = directory
        self.port = port
        self.server_id = server_id
        self.replication_password = replication_password
        self.semi_sync_timeout_ms = semi_sync_timeout_ms
        self.data = directory / "data"
        self.socket = directory / "mysqld.sock"
        self.log_path = directory / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._os_user = pwd.getpwuid(os.geteuid()).pw_name

    # -- process ------------------------------------------------------------------------------

    def _options(self) -> list[str]:
        return [
            f"--server-id={self.server_id}", "--log-bin=mysql-bin", "--log-slave-updates",
            "--binlog-format=ROW", "--gtid-strict-mode=ON", "--read-only", "--skip-slave-start",
            "--rpl-semi-sync-slave-enabled=ON", "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            f"--rpl-semi-sync-master-timeout={self.semi_sync_timeout_ms}",
            # A process crash (SIGKILL) keeps what was written to the OS: durable against the
            # failure this cluster handles, cheaper than an fsync per commit.
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
            "--skip-name-resolve", "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci", "--max-connections=300",
        ]

    @property
    def initialised(self) -> bool:
        return (self.data / "mysql").is_dir()

    def prepare(self) -> None:
        """Create the data directory (``mariadb-install-db``) unless it exists."""
        if self.initialised:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            result = subprocess.run(
                [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={self.data}",
                 f"--user={self._os_user}", "--auth-root-authentication-method=normal",
                 "--skip-test-db"],
                stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise DBClusterError(f"mariadb-install-db failed for {self.name} (exit "
                                 f"{result.returncode}); end of {self.log_path}:\n"
                                 f"{_tail(self.log_path)}")

    def start(self) -> None:
        """Start ``mariadbd`` and wait until it answers (read-only, replication stopped)."""
        if self.running:
            return
        self.prepare()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [_binary("mariadbd"), "--no-defaults", f"--datadir={self.data}",
                 f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                 f"--user={self._os_user}", f"--pid-file={self.dir / 'mariadbd.pid'}",
                 f"--log-error={self.log_path}", *self._options()],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DBClusterError(
                    f"{self.name} (mariadbd on port {self.port}) exited with status "
                    f"{self.proc.returncode} while starting; end of {self.log_path}:\n"
                    f"{_tail(self.log_path)}")
            if self.ping(timeout=1.0):
                log.info("db_cluster.instance_started", instance=self.name, port=self.port,
                         pid=self.pid)
                return
            time.sleep(0.05)
        raise DBClusterError(f"{self.name} not answering after {START_TIMEOUT:.0f}s; end of "
                             f"{self.log_path}:\n{_tail(self.log_path)}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- SQL ------------------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> pymysql.Connection[Any]:
        """root over the instance's own socket: the cluster's private admin path."""
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True,
                               connect_timeout=timeout, read_timeout=max(timeout, 30.0),
                               cursorclass=pymysql.cursors.DictCursor)

    def ping(self, timeout: float = 1.0) -> bool:
        """RDS's health check: can a session run ``SELECT 1``?"""
        try:
            conn = pymysql.connect(unix_socket=str(self.socket), user="root",
                                   connect_timeout=timeout, read_timeout=timeout,
                                   write_timeout=timeout)
        except (pymysql.Error, OSError):
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except (pymysql.Error, OSError):
            return False
        finally:
            conn.close()

    def execute(self, *statements: str) -> list[dict[str, Any]]:
        """Run ``statements`` in one session; the rows of the last one."""
        rows: list[dict[str, Any]] = []
        with self.connect() as conn, conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
                rows = list(cur.fetchall())
        return rows

    def describe(self) -> dict[str, Any]:
        """GTID positions, read-only flag and replica status, for status and decisions."""
        with self.connect(timeout=1.0) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_current_pos AS current, @@gtid_binlog_pos AS binlog, "
                        "@@gtid_slave_pos AS slave, @@read_only AS read_only, "
                        "@@rpl_semi_sync_master_enabled AS semi_sync_source")
            row = cur.fetchone() or {}
            cur.execute("SHOW SLAVE STATUS")
            replica = cur.fetchone()
        info: dict[str, Any] = {
            "gtid_current_pos": row.get("current", ""), "gtid_binlog_pos": row.get("binlog", ""),
            "gtid_slave_pos": row.get("slave", ""), "read_only": bool(row.get("read_only")),
            "semi_sync_source": bool(row.get("semi_sync_source")), "replication": None}
        if replica:
            info["replication"] = {
                "source_port": replica["Master_Port"],
                "io_running": replica["Slave_IO_Running"],
                "sql_running": replica["Slave_SQL_Running"],
                "gtid_io_pos": replica["Gtid_IO_Pos"],
                "seconds_behind_master": replica["Seconds_Behind_Master"],
                "last_io_error": replica["Last_IO_Error"],
                "last_sql_error": replica["Last_SQL_Error"]}
        return info

    # -- roles ---------------------------------------------------------------------------------

    def create_replication_user(self) -> None:
        """The account replicas log in with, created locally (not replicated) on each server
        so that either can be the source after a failover."""
        pw = pymysql.converters.escape_string(self.replication_password)
        self.execute(
            "SET SESSION sql_log_bin=0",
            f"CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}'",
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO "
            f"'{REPLICATION_USER}'@'127.0.0.1'")

    def replicate_from(self, source: MariaDBInstance) -> None:
        """Become a read-only replica of ``source`` from this server's own GTID position
        (``MASTER_USE_GTID=slave_pos``, the position set to what this server has applied,
        whether it was a replica or a primary before)."""
        pw = pymysql.converters.escape_string(self.replication_password)
        self.execute(
            "SET GLOBAL read_only=ON", "STOP SLAVE", "RESET SLAVE ALL",
            "SET GLOBAL rpl_semi_sync_master_enabled=OFF",
            "SET GLOBAL gtid_slave_pos=@@gtid_current_pos",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, "
            f"MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD='{pw}', "
            "MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos",
            "START SLAVE")
        log.info("db_cluster.replicating", instance=self.name, source=source.name)

    def wait_replicating(self, timeout: float) -> str | None:
        """None once both replica threads run; else the replication error (or a timeout)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.describe()["replication"] or {}
            if status.get("last_io_error") or status.get("last_sql_error"):
                return str(status.get("last_io_error") or status.get("last_sql_error"))
            if status.get("io_running") == "Yes" and status.get("sql_running") == "Yes":
                return None
            time.sleep(0.1)
        return f"replica threads not running after {timeout:.0f}s: {status}"

    def wait_for_gtid(self, position: str, timeout: float) -> bool:
        """Wait until this replica has applied ``position`` (``MASTER_GTID_WAIT``)."""
        if not position:
            return True
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT MASTER_GTID_WAIT(%s, %s) AS r", (position, timeout))
            row = cur.fetchone() or {}
        return row.get("r") == 0

    def promote(self, apply_timeout: float) -> None:
        """Make this replica the writer: apply what it received, forget its source, open
        for writes (``STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=OFF``)."""
        status = self.describe()["replication"]
        if status is not None:
            self.execute("STOP SLAVE IO_THREAD")
            received = (self.describe()["replication"] or {}).get("gtid_io_pos", "")
            if not self.wait_for_gtid(received, apply_timeout):
                log.warning("db_cluster.promote_unapplied", instance=self.name,
                            received=received)
        self.execute("STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=OFF")
        log.info("db_cluster.promoted", instance=self.name)

    def set_semi_sync_source(self, enabled: bool) -> None:
        self.execute(f"SET GLOBAL rpl_semi_sync_master_enabled={'ON' if enabled else 'OFF'}")

    def rebuild_from(self, source: MariaDBInstance) -> None:
        """Replace this server's data with a copy of ``source``'s and replicate from there.

        For a server that cannot rejoin from its own position: an old primary that wrote
        a transaction its standby never received (the client was never told it committed,
        since semi-synchronous replication acknowledges only what the standby has) has a
        history the new primary does not share. RDS replaces such a standby; here its data
        directory is made anew from a consistent ``mariadb-dump`` of the primary, imported
        without binary logging so the copy starts at the primary's GTID position.
        """
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.start()  # prepare() makes a fresh data directory
        dump = self.dir / "rebuild.sql"
        with dump.open("wb") as out, self.log_path.open("ab") as errors:
            result = subprocess.run(
                [_binary("mariadb-dump"), "--no-defaults", f"--socket={source.socket}",
                 "-uroot", "--all-databases", "--single-transaction", "--gtid",
                 "--master-data=2", "--routines", "--events", "--triggers"],
                stdout=out, stderr=errors, check=False)
        if result.returncode != 0:
            raise DBClusterError(f"mariadb-dump of {source.name} failed (exit "
                                 f"{result.returncode}); see {self.log_path}")
        with dump.open("rb") as f:  # the position is written at the end of the dump
            f.seek(max(0, dump.stat().st_size - 65536))
            found = _DUMP_GTID.search(f.read())
        if found is None:
            raise DBClusterError(f"the dump of {source.name} names no GTID position; see "
                                 f"{dump}")
        position = found.group(1).decode()
        with dump.open("rb") as sql, self.log_path.open("ab") as errors:
            result = subprocess.run(
                [_binary("mariadb"), "--no-defaults", f"--socket={self.socket}", "-uroot",
                 "--init-command=SET SESSION sql_log_bin=0"],
                stdin=sql, stdout=errors, stderr=errors, check=False)
        dump.unlink(missing_ok=True)
        if result.returncode != 0:
            raise DBClusterError(f"loading {source.name}'s copy into {self.name} failed (exit "
                                 f"{result.returncode}); see {self.log_path}")
        self.execute("SET SESSION sql_log_bin=0", "RESET MASTER",
                     f"SET GLOBAL gtid_slave_pos='{position}'", "FLUSH PRIVILEGES")
        log.info("db_cluster.rebuilt", instance=self.name, source=source.name,
                 gtid_position=position)
        self.replicate_from(source)
