"""Real database and cache servers for tests, started from their binaries.

Each server runs as a child of the test process on a fresh temporary directory
and a free loopback port, and is stopped (and its directory removed) when its
context manager exits::

    with mariadb_server() as server:
        url = server.url                        # mysql+pymysql://app:app@127.0.0.1:PORT/appdb
        other = server.create_database("x")     # a fresh empty database, same user

A missing binary skips the calling test with the apt-get line that installs it,
or fails it when ``TIERLAKE_REQUIRE_SERVICES=1`` (CI, where skipping would hide
untested code). PostgreSQL comes from the newest ``/usr/lib/postgresql/*/bin``
unless ``TIERLAKE_PG_BINDIR`` names another directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import psycopg
import pymysql
import pytest

OWNER_FILE = "owner.pid"  # pid of the test process, to clean up after a killed run
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ServerError(RuntimeError):
    pass


def require_binary(path: str | None, what: str, package: str) -> str:
    """``path`` if it is an executable, else skip (or fail) naming the package."""
    if path and os.access(path, os.X_OK):
        return path
    message = (
        f"{what} not found: tests that need it are NOT RUN. "
        f"Install it with: apt-get install -y {package}"
    )
    if os.environ.get("TIERLAKE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (TIERLAKE_REQUIRE_SERVICES=1 makes this an error)", pytrace=False)
    pytest.skip(message)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, from below the kernel's ephemeral range.

    A port from ``bind(("", 0))`` is an ephemeral one: the kernel hands the same range out
    as the source port of every outgoing connection and to every other ``bind(0)``, so in
    the moment between a test releasing it and the system under test binding it, another
    socket can take it (CI once saw the BI load balancer's port taken so). Ports below the
    range go only to those who ask for them by number, and this process never hands one
    out twice.
    """
    low = max(1024, _EPHEMERAL_LOW - 12000)
    for _ in range(200):
        port = random.randrange(low, _EPHEMERAL_LOW)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{_EPHEMERAL_LOW - 1} after 200 tries")


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork


def _die_with_parent() -> None:
    # Runs in the child before exec (after any setuid, which would clear it):
    # the kernel sends SIGTERM to the server when the thread that started it
    # ends, so a test process killed without cleaning up (SIGKILL, a CI
    # timeout) leaves no server behind.
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def scratch_dir(name: str) -> Path:
    """A new temporary directory, removed by a later run if this process gets killed."""
    _sweep_leftovers()
    path = Path(tempfile.mkdtemp(prefix=f"tierlake-{name}-"))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


def _sweep_leftovers() -> None:
    """Remove server directories left by test processes that were killed (SIGKILL)."""
    for owner in Path(tempfile.gettempdir()).glob(f"tierlake-*/{OWNER_FILE}"):
        try:
            os.kill(int(owner.read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(owner.parent, ignore_errors=True)
        except (OSError, ValueError):
            pass  # owner alive (as another user) or file unreadable: leave it


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run(cmd: list[str], log: Path, **kwargs: Any) -> None:
    with log.open("ab") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)
    if result.returncode != 0:
        raise ServerError(f"{cmd[0]} exited {result.returncode}; end of its log:\n{_tail(log)}")


class Server:
    """A server process on a temporary directory; subclasses say how to start it."""

    name = "server"
    as_user: str | None = None  # run as this user when we are root (PostgreSQL)
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.dir = scratch_dir(self.name)
        self.log = self.dir / "server.log"
        self.port = 0
        self.url = ""  # set once the server is up
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._user = self.as_user if os.geteuid() == 0 else None
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def user_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that drop root for ``as_user`` (nothing otherwise)."""
        if not self._user:
            return {}
        return {"user": self._user, "group": self._user, "extra_groups": []}

    # -- to override ------------------------------------------------------------------------

    def prepare(self) -> None:
        """One-time set-up of the data directory (before the first start)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the server answers; may raise while it is still starting."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Create users and databases once the server answers."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        try:
            self.prepare()
            # The free port may be taken between our probe and the server's bind:
            # try another one in that case.
            for _ in range(3):
                self.port = free_port()
                if self._spawn_and_wait():
                    break
            else:
                raise ServerError(f"{self.name}: no free port after 3 attempts")
            self.after_start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _spawn_and_wait(self) -> bool:
        log_size = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                **self.user_kwargs(),
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT
        not_ready: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with self.log.open("rb") as f:
                    f.seek(log_size)
                    new_output = f.read().decode(errors="replace")
                if "Address already in use" in new_output:
                    return False
                raise ServerError(
                    f"{self.name} exited with status {self.proc.returncode} while starting; "
                    f"end of its log:\n{_tail(self.log)}"
                )
            try:
                if self.ready():
                    return True
            except Exception as exc:  # noqa: BLE001 - still starting, most likely; kept for the error
                not_ready = exc
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} not ready after {START_TIMEOUT:.0f}s (last try: {not_ready!r}); "
            f"end of its log:\n{_tail(self.log)}"
        )

    def stop(self) -> None:
        """Stop the server (``stop_signal``, SIGKILL if it hangs); remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MariaDBServer(Server):
    """MariaDB with user ``app``/``app`` owning database ``appdb`` (and any it creates)."""

    name = "mariadb"

    def __init__(self, buffer_pool: str = "64M") -> None:
        self.buffer_pool = buffer_pool  # InnoDB's cache; RDS gives it 3/4 of the memory
        self.mariadbd = require_binary(
            shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin"),
            "MariaDB server (mariadbd)",
            "mariadb-server",
        )
        self.install_db = require_binary(
            shutil.which("mariadb-install-db"), "mariadb-install-db", "mariadb-server"
        )
        super().__init__()
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.os_user = pwd.getpwuid(os.geteuid()).pw_name  # mariadbd runs as root only if told

    # Durability off and small buffers: a throw-away test server.
    @property
    def _options(self) -> tuple[str, ...]:
        return (f"--innodb-buffer-pool-size={self.buffer_pool}", *self._fixed_options)

    _fixed_options = (
        "--innodb-log-file-size=16M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
    )

    def prepare(self) -> None:
        _run(
            [self.install_db, "--no-defaults", f"--datadir={self.data}", f"--user={self.os_user}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *self._options],
            self.log,
        )

    def command(self) -> list[str]:
        return [
            self.mariadbd, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--user={self.os_user}",
            f"--pid-file={self.dir / 'mariadbd.pid'}", f"--log-error={self.log}",
            *self._options,
        ]  # fmt: skip

    def _admin(self) -> pymysql.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2,
                               autocommit=True)

    def ready(self) -> bool:
        self._admin().close()
        return True

    def after_start(self) -> None:
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app'")
        self.url = self.create_database("appdb")

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` owned by ``app``; returns its URL."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"GRANT ALL ON `{name}`.* TO 'app'@'127.0.0.1'")
        return f"mysql+pymysql://app:app@127.0.0.1:{self.port}/{name}"


class PostgreSQLServer(Server):
    """PostgreSQL with role ``app``/``app`` owning database ``appdb`` (and any it creates).

    Runs as the ``postgres`` user when we are root (initdb refuses root), so its
    directory is made outside pytest's private (mode 700) temporary tree.
    """

    name = "postgresql"
    as_user = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: ends sessions, no waiting for clients

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)
        bindir = os.environ.get("TIERLAKE_PG_BINDIR") or (bindirs[-1] if bindirs else "")
        self.initdb = require_binary(
            os.path.join(bindir, "initdb") if bindir else shutil.which("initdb"),
            "PostgreSQL server (initdb)",
            "postgresql",
        )
        self.postgres = require_binary(
            os.path.join(os.path.dirname(self.initdb), "postgres"),
            "PostgreSQL server (postgres)",
            "postgresql",
        )
        super().__init__()
        self.data = self.dir / "data"

    def prepare(self) -> None:
        _run(
            [self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
            self.log,
            **self.user_kwargs(),
        )

    def command(self) -> list[str]:
        return [
            self.postgres, "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",  # TCP only: no socket file to place
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname="postgres", connect_timeout=2, autocommit=True)

    def ready(self) -> bool:
        self._admin().close()
        return True

    def after_start(self) -> None:
        with self._admin() as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'app'")
        self.url = self.create_database("appdb")

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` owned by ``app``; returns its URL."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER app')
        return f"postgresql+psycopg://app:app@127.0.0.1:{self.port}/{name}"


class RedisServer(Server):
    """Redis without persistence; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    name = "redis"

    def __init__(self) -> None:
        self.binary = require_binary(shutil.which("redis-server"), "redis-server", "redis-server")
        super().__init__()

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.log)]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def after_start(self) -> None:
        self.url = f"redis://127.0.0.1:{self.port}/0"


class SQLiteFiles:
    """The SQLite counterpart of a server: each database is a file in ``dir``."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def create_database(self, name: str) -> str:
        path = self.dir / f"{name}.db"
        if path.exists():
            raise FileExistsError(path)
        return f"sqlite:///{path}"


# What database fixtures hand out: something with ``.name`` and ``.create_database(name)``.
DatabaseServer = MariaDBServer | PostgreSQLServer | SQLiteFiles


def _version_key(bindir: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", bindir))


@contextlib.contextmanager
def mariadb_server(buffer_pool: str = "64M") -> Iterator[MariaDBServer]:
    with MariaDBServer(buffer_pool) as server:
        yield server


@contextlib.contextmanager
def postgresql_server() -> Iterator[PostgreSQLServer]:
    with PostgreSQLServer() as server:
        yield server


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
