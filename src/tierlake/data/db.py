"""Connections to the store's database: one engine, read and write sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout; write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock
instead of failing when one upgrades a read lock. MySQL/MariaDB and PostgreSQL
run at READ COMMITTED. Transient conflicts (deadlock, lock timeout, a busy
SQLite file) are retried a few times by :meth:`Database.write` and
:meth:`Database.transaction`.

There is no ping before each pool checkout (``pool_pre_ping``): it cost a round
trip per checkout. A connection that died in the pool (server restarted, idle
timeout) is found on use instead: SQLAlchemy invalidates it and the whole pool
generation, a read run through :meth:`Database.run` is retried once on a fresh
connection, and a write fails with :class:`~tierlake.errors.DatabaseUnavailableError`
(a 503 for the client), never retried blindly, since its commit may or may not
have happened. See SQLAlchemy's "Dealing with Disconnects" (pessimistic
pre-ping against optimistic handling):
https://docs.sqlalchemy.org/en/20/core/pooling.html#dealing-with-disconnects

The hot paths (catalogue pages, checkout) use Core statements on one pooled
connection per request (:meth:`Database.run`), so a read ends with one
``ROLLBACK`` (the connection's; the pool then skips its own reset) instead of a
session's rollback followed by the pool's.

Read replicas (``TIERLAKE_DATABASE_REPLICA_URLS``, MariaDB): a read that may be slightly
stale (``stale_ok=True``: catalogue, search, product pages, order history) runs on a replica;
everything else (checkout, its idempotency re-read, logins, the token lookup, carts) on the
primary. A customer's own reads after a write see that write (``read_your_writes=True``):
the read asks the primary for its GTID position (``@@gtid_binlog_pos``, one round trip that
touches no table) and waits on the replica until it has applied it (``MASTER_GTID_WAIT``,
bounded by ``replica_wait``), else runs on the primary. This needs no state shared between
app instances (a "primary for a while after a write" window kept per process would miss when
the balancer sends the next request to another instance) and waits only as long as the
replica is actually behind. :class:`ReplicaMonitor` measures each replica's lag from the same
GTID positions once a second; a replica that is unreachable or further behind than
``replica_max_lag`` is skipped (said once in the log), and a replica read that fails on a
lost connection is run again on the primary, so a replica never causes an error. See
MariaDB's "MASTER_GTID_WAIT" and "Global Transaction ID" (gtid_binlog_pos,
gtid_current_pos) documentation, and RDS's "Working with DB instance read replicas".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Mapper, Session, sessionmaker

from tierlake.data import schema
from tierlake.errors import ConfigError, DatabaseUnavailableError

if TYPE_CHECKING:
    from tierlake.config import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Tables whose hard deletes leave a tombstone (see schema.DeletedRow).
TOMBSTONED = (schema.AuthSession, schema.Cart, schema.CartItem)


def safe_url(url: str) -> str:
    """The URL with its password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def create_db_engine(url: str, pool_size: int = 10, *,
                     connect_timeout: float | None = None) -> Engine:
    """The engine for ``url``; ``connect_timeout`` (MySQL/MariaDB) bounds a connect, for a
    replica that may hang rather than refuse."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"TIERLAKE_DATABASE_URL is not a database URL ({exc}); expected e.g. "
            "sqlite:///var/tierlake.db, mysql+pymysql://user:pw@host/db or "
            "postgresql+psycopg://user:pw@host/db"
        ) from exc
    backend = parsed.get_backend_name()
    # No pool_pre_ping: a dead connection is handled on use (module docstring). No reset on
    # return either: every use goes through a SQLAlchemy Connection or Session, which ends its
    # own transaction (rollback on close) before the connection goes back, so the pool's
    # extra ROLLBACK was a round trip that never had anything to undo.
    kwargs: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None}
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database not in (None, "", ":memory:"):
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    elif backend in ("mysql", "mariadb"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
                      isolation_level="READ COMMITTED")
        if connect_timeout is not None:
            kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
    elif backend == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=pool_size,
                      isolation_level="READ COMMITTED")
    else:
        raise ConfigError(
            f"database backend {backend!r} is not supported; use sqlite, mysql/mariadb "
            "or postgresql in TIERLAKE_DATABASE_URL"
        )
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"no driver for {parsed.drivername!r}: use mysql+pymysql:// or postgresql+psycopg://"
        ) from exc
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the database driver is not installed: pip install {exc.name}") from exc
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
        # transaction handling would defer it and break BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@event.listens_for(Mapper, "after_delete")
def _record_tombstone(mapper, connection, target):
    if isinstance(target, TOMBSTONED):
        key = ",".join(str(v) for v in mapper.primary_key_from_instance(target))
        connection.execute(
            insert(schema.DeletedRow.__table__).values(
                table_name=mapper.local_table.name, row_key=key, deleted_at=schema.utcnow()
            )
        )


def is_transient(exc: BaseException) -> bool:
    """Deadlocks, lock timeouts, serialization failures and a busy SQLite file."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    args = getattr(orig, "args", ()) if orig is not None else ()
    code = args[0] if args else None
    if code in (1205, 1213):  # MySQL lock wait timeout, deadlock
        return True
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):
        return True
    return "database is locked" in str(orig)


def is_unavailable(exc: BaseException) -> bool:
    """The server cannot be reached at all (as opposed to a bad statement)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True  # SQLAlchemy's dialect recognised a disconnect
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in ("can't connect", "connection refused", "could not connect", "server has gone",
                  "lost connection", "unable to open database", "connection is bad")
    )


GtidPosition = dict[int, int]  # replication domain -> sequence number


def parse_gtid_position(value: str | None) -> GtidPosition:
    """``0-1-42,1-2-7`` -> {0: 42, 1: 7} (a MariaDB GTID position, one GTID per domain)."""
    position: GtidPosition = {}
    for part in (value or "").split(","):
        part = part.strip()
        if part:
            domain, _server, seq = part.split("-")
            position[int(domain)] = int(seq)
    return position


def covers(replica: GtidPosition, primary: GtidPosition) -> bool:
    """Whether a replica at ``replica`` has applied everything up to ``primary``."""
    return all(replica.get(domain, -1) >= seq for domain, seq in primary.items())


def primary_position(conn: Connection) -> str:
    """The primary's position: every transaction it has committed (binary-logged)."""
    return str(conn.exec_driver_sql("SELECT @@global.gtid_binlog_pos").scalar() or "")


def replica_position(conn: Connection) -> str:
    """What a replica has applied (its own and replicated transactions)."""
    return str(conn.exec_driver_sql("SELECT @@global.gtid_current_pos").scalar() or "")


def wait_for_position(conn: Connection, position: str, timeout: float) -> bool:
    """Wait on a replica until it has applied ``position``; False after ``timeout``
    (MariaDB's ``MASTER_GTID_WAIT``: 0 reached, -1 timed out)."""
    if not position:
        return True
    if covers(parse_gtid_position(replica_position(conn)), parse_gtid_position(position)):
        return True  # no second round trip when it is already there
    result = conn.execute(text("SELECT MASTER_GTID_WAIT(:pos, :timeout)"),
                          {"pos": position, "timeout": timeout}).scalar()
    return result == 0


def choose_extract_database(url: str, replica_urls: Sequence[str], lookback: float
                            ) -> tuple[str, str]:
    """Where the extract reads: ``(url, why)``. A replica only when it is less than the
    extract's lookback behind: it must apply the primary's position of now within half the
    lookback (``MASTER_GTID_WAIT``), so what it then shows is at most that old, and the
    lookback (which re-reads a window of recent changes) still covers commits that reached
    it late. Otherwise, or when it cannot be reached, the primary."""
    if not replica_urls:
        return url, "primary (no replica configured)"
    wait = min(lookback / 2, 10.0)
    primary = create_db_engine(url, pool_size=1)
    try:
        with primary.connect() as conn:
            position = primary_position(conn)
    finally:
        primary.dispose()
    for replica_url in replica_urls:
        engine = create_db_engine(replica_url, pool_size=1, connect_timeout=5)
        try:
            began = time.monotonic()
            with engine.connect() as conn:
                caught_up = wait_for_position(conn, position, wait)
            took = time.monotonic() - began
        except DBAPIError as exc:
            log.warning("extract.replica_unusable", replica=safe_url(replica_url),
                        error=str(exc.orig)[:200])
            continue
        finally:
            engine.dispose()
        if caught_up:
            return replica_url, (f"replica {safe_url(replica_url)} (lag under {took:.2f} s, "
                                 f"lookback {lookback:g} s)")
        log.warning("extract.replica_behind", replica=safe_url(replica_url),
                    detail=f"not caught up within {wait:g} s (half the lookback)")
    return url, f"primary (no replica within {wait:g} s of it; lookback {lookback:g} s)"


class Replica:
    """One read replica: its engine and what the monitor last saw of it."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.available = True  # optimistic until the first check says otherwise
        self.lag_seconds: float | None = 0.0
        self.problem = ""  # why it is skipped, "" when usable
        # Primary positions the replica had not reached yet, with when they were first seen.
        self._pending: deque[tuple[GtidPosition, float]] = deque(maxlen=10_000)

    def observe(self, primary: GtidPosition, replica: GtidPosition, now: float) -> float:
        """Record one pair of positions; the lag: how long ago the primary was first seen
        at a position the replica has still not applied (0 when it is caught up). Its
        resolution is the check interval, like a heartbeat table's."""
        if not self._pending or self._pending[-1][0] != primary:
            self._pending.append((primary, now))
        while self._pending and covers(replica, self._pending[0][0]):
            self._pending.popleft()
        return now - self._pending[0][1] if self._pending else 0.0


class ReplicaMonitor:
    """Checks every replica's reachability and lag once per ``interval`` from a daemon
    thread, and says once (not per request) when one becomes unusable or usable again."""

    def __init__(self, primary: Engine, replicas: Sequence[Replica], *, max_lag: float,
                 interval: float = 1.0) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.max_lag = max_lag
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.interval)

    def check(self) -> None:
        try:
            with self.primary.connect() as conn:
                primary = parse_gtid_position(primary_position(conn))
        except Exception as exc:  # noqa: BLE001 - the primary's own errors surface on use
            log.debug("db.replica_check_skipped", error=str(exc)[:200])
            return
        for replica in self.replicas:
            try:
                with replica.engine.connect() as conn:
                    position = parse_gtid_position(replica_position(conn))
            except Exception as exc:  # noqa: BLE001 - any failure makes it unusable
                self.set_problem(replica, f"unreachable: {str(exc)[:200]}")
                continue
            replica.lag_seconds = replica.observe(primary, position, time.monotonic())
            if replica.lag_seconds > self.max_lag:
                self.set_problem(replica, f"{replica.lag_seconds:.1f} s behind the primary "
                                          f"(more than {self.max_lag:g} s)")
            else:
                self.set_problem(replica, "")

    @staticmethod
    def set_problem(replica: Replica, problem: str) -> None:
        """Mark ``replica`` unusable (``problem``) or usable (""), logging each change of
        state once."""
        was_usable = not replica.problem
        replica.problem, replica.available = problem, not problem
        if problem and was_usable:
            log.warning("db.replica_skipped", replica=safe_url(replica.url), reason=problem,
                        detail="reads go to the primary until it is usable again")
        elif not problem and not was_usable:
            log.info("db.replica_usable", replica=safe_url(replica.url))


class Database:
    """The store's database for one process: an engine and its sessions, and the read
    replicas' engines when there are any (module docstring)."""

    def __init__(self, url: str, pool_size: int = 10, replica_urls: Sequence[str] = (), *,
                 replica_max_lag: float = 5.0, replica_wait: float = 0.5,
                 replica_check_interval: float = 1.0) -> None:
        self.url = url
        self.engine = create_db_engine(url, pool_size)
        self.backend = self.engine.dialect.name
        if replica_urls and self.backend not in ("mysql", "mariadb"):
            raise ConfigError(
                f"read replicas need a MariaDB primary, and TIERLAKE_DATABASE_URL is "
                f"{self.backend}; set TIERLAKE_DATABASE_REPLICA_URLS=[] (PostgreSQL replicas "
                "are not supported yet)")
        self.replicas = [Replica(u, create_db_engine(u, pool_size, connect_timeout=2))
                         for u in replica_urls]
        self.replica_wait = replica_wait
        self._next_replica = itertools.count()
        self.monitor: ReplicaMonitor | None = None
        if self.replicas:
            self.monitor = ReplicaMonitor(self.engine, self.replicas, max_lag=replica_max_lag,
                                          interval=replica_check_interval)
            self.monitor.start()
        # Per thread: whether the request running in :meth:`run` has begun a write.
        self._local = threading.local()
        # SQLite has one writer at a time. Its busy handler waits for the lock by sleeping
        # (1, 2, 5 ... 100 ms), so threads racing for it slept through locks freed long
        # before: under 32 concurrent checkouts most of the time (docs/benchmarks.md). This
        # process's writers queue on a lock instead and wake as it is freed; other processes
        # on the same file still meet the busy handler.
        self._writer: AbstractContextManager[object] = (
            threading.RLock() if self.backend == "sqlite" else nullcontext())
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )

    @property
    def one_writer(self) -> bool:
        """The database runs one write transaction at a time, whoever asks (SQLite: one
        lock for the file, across processes): a committed row no other writer can see
        before this transaction ends is not worth a transaction of its own."""
        return self.backend == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.translate_errors(), self._read() as session:
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session committed on success, rolled back on error (no retry)."""
        with self.translate_errors(), self._writer, self._write() as session, session.begin():
            yield session

    def write(self, fn: Callable[[Session], T], attempts: int = 4) -> T:
        """Run ``fn`` in one write transaction, retrying transient conflicts."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as session:
                    return fn(session)
            except DBAPIError as exc:
                if attempt == attempts or not is_transient(exc):
                    raise
                log.info("db.retry", attempt=attempt, error=str(exc.orig)[:200])
                time.sleep(0.02 * attempt)
        raise AssertionError("unreachable")

    def run(self, fn: Callable[[Connection], T], *, stale_ok: bool = False,
            read_your_writes: bool = False) -> T:
        """Run ``fn`` (one request's database work) on one pooled connection.

        One checkout for the whole request: its reads, and the write transactions it opens
        with :meth:`transaction`. If the connection turns out dead before ``fn`` sent a
        COMMIT, ``fn`` runs once more on a fresh connection (the pool was invalidated; the
        server rolled back what the dead connection had not committed); once a COMMIT was
        sent, whether it landed is unknown, and the error is a
        :class:`DatabaseUnavailableError` instead.

        ``stale_ok``: ``fn`` only reads, and may read a replica (module docstring);
        ``read_your_writes``: the replica must first have applied everything the primary
        had committed when the read began.
        """
        if stale_ok and self.replicas:
            done, result = self._on_replica(fn, read_your_writes)
            if done:
                return result  # type: ignore[return-value]
        with self.translate_errors():
            self._local.wrote = False
            try:
                with self.engine.connect() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if not exc.connection_invalidated or self._local.wrote:
                    raise
                log.warning("db.reconnect", backend=self.backend, error=str(exc.orig)[:200])
            with self.engine.connect() as conn:
                return fn(conn)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The app tier's database: ``database_url`` and its replicas, as configured."""
        return cls(settings.resolved_database_url, settings.database_pool_size,
                   settings.database_replica_urls,
                   replica_max_lag=settings.database_replica_max_lag_seconds,
                   replica_wait=settings.database_replica_wait_seconds)

    def _replica(self) -> Replica | None:
        """A usable replica, in turn; None when there is none."""
        usable = [r for r in self.replicas if r.available]
        if not usable:
            return None
        return usable[next(self._next_replica) % len(usable)]

    def _on_replica(self, fn: Callable[[Connection], T],
                    read_your_writes: bool) -> tuple[bool, T | None]:
        """``(True, result)`` when ``fn`` ran on a replica, ``(False, None)`` when the
        primary must run it (no usable replica, not caught up in time, or lost on use)."""
        replica = self._replica()
        if replica is None:
            return False, None
        position = ""
        if read_your_writes:
            with self.translate_errors(), self.engine.connect() as conn:
                position = primary_position(conn)
        try:
            with replica.engine.connect() as conn:
                if not wait_for_position(conn, position, self.replica_wait):
                    log.debug("db.replica_behind", replica=safe_url(replica.url),
                              position=position)
                    return False, None
                conn.rollback()  # the wait's transaction: the read sees what was applied
                return True, fn(conn)
        except DBAPIError as exc:
            if not (is_unavailable(exc) or exc.connection_invalidated):
                raise
            ReplicaMonitor.set_problem(replica, f"unreachable: {str(exc.orig)[:200]}")
            return False, None

    def reading(self, fn: Callable[[Session], T], *, stale_ok: bool = False,
                read_your_writes: bool = False) -> T:
        """Run ``fn`` with a read-only ORM session, retried once on a dead connection (as
        :meth:`run`, whose ``stale_ok`` and ``read_your_writes`` it takes). The session joins
        the connection's transaction, so the read ends with the connection's one
        ``ROLLBACK``."""
        def _read(conn: Connection) -> T:
            conn.begin()
            # Joining a transaction already begun, the session leaves it to the connection
            # (join_transaction_mode "conditional_savepoint" -> "rollback_only").
            with Session(bind=conn, expire_on_commit=False) as session:
                return fn(session)

        return self.run(_read, stale_ok=stale_ok, read_your_writes=read_your_writes)

    def transaction(self, conn: Connection, fn: Callable[[Connection], T],
                    attempts: int = 4) -> T:
        """Run ``fn`` in one write transaction on ``conn``, retrying transient conflicts.

        A read transaction still open on ``conn`` is ended first. On SQLite the transaction
        starts with ``BEGIN IMMEDIATE`` (writers queue on the lock instead of failing on
        upgrade).
        """
        if conn.in_transaction():
            conn.rollback()
        conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            for attempt in range(1, attempts + 1):
                try:
                    with self._writer, conn.begin():
                        result = fn(conn)
                        # The COMMIT is next: if its answer is lost, it may have landed.
                        self._local.wrote = True
                        return result
                except DBAPIError as exc:
                    if attempt == attempts or not is_transient(exc):
                        raise
                    log.info("db.retry", attempt=attempt, error=str(exc.orig)[:200])
                    time.sleep(0.02 * attempt)
            raise AssertionError("unreachable")
        finally:
            if not conn.invalidated:
                conn.execution_options(sqlite_begin="DEFERRED")

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError(
                    f"cannot reach the database at {safe_url(self.url)}: {exc.orig}. "
                    "Check that it is running and that TIERLAKE_DATABASE_URL is right."
                ) from exc
            raise

    def replica_status(self) -> list[dict[str, object]]:
        """Each replica as the monitor last saw it (URL without password, lag, problem)."""
        return [{"url": safe_url(r.url), "available": r.available,
                 "ReplicaLag": r.lag_seconds, "problem": r.problem} for r in self.replicas]

    def dispose(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        self.engine.dispose()
        for replica in self.replicas:
            replica.engine.dispose()
