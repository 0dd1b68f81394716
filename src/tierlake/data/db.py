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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, create_engine, event, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Mapper, Session, sessionmaker

from tierlake.data import schema
from tierlake.errors import ConfigError, DatabaseUnavailableError

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


def create_db_engine(url: str, pool_size: int = 10) -> Engine:
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
    elif backend in ("mysql", "mariadb"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
                      isolation_level="READ COMMITTED")
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


class Database:
    """The store's database for one process: an engine and its sessions."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.engine = create_db_engine(url, pool_size)
        self.backend = self.engine.dialect.name
        # Per thread: whether the request running in :meth:`run` has begun a write.
        self._local = threading.local()
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.translate_errors(), self._read() as session:
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session committed on success, rolled back on error (no retry)."""
        with self.translate_errors(), self._write() as session, session.begin():
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

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` (one request's database work) on one pooled connection.

        One checkout for the whole request: its reads, and the write transactions it opens
        with :meth:`transaction`. If the connection turns out dead before ``fn`` wrote
        anything, ``fn`` runs once more on a fresh connection (the pool was invalidated);
        after a write began, the error is a :class:`DatabaseUnavailableError` instead.
        """
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

    def reading(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` with a read-only ORM session, retried once on a dead connection (as
        :meth:`run`). The session joins the connection's transaction, so the read ends with
        the connection's one ``ROLLBACK``."""
        def _read(conn: Connection) -> T:
            conn.begin()
            # Joining a transaction already begun, the session leaves it to the connection
            # (join_transaction_mode "conditional_savepoint" -> "rollback_only").
            with Session(bind=conn, expire_on_commit=False) as session:
                return fn(session)

        return self.run(_read)

    def transaction(self, conn: Connection, fn: Callable[[Connection], T],
                    attempts: int = 4) -> T:
        """Run ``fn`` in one write transaction on ``conn``, retrying transient conflicts.

        A read transaction still open on ``conn`` is ended first. On SQLite the transaction
        starts with ``BEGIN IMMEDIATE`` (writers queue on the lock instead of failing on
        upgrade).
        """
        if conn.in_transaction():
            conn.rollback()
        self._local.wrote = True
        conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            for attempt in range(1, attempts + 1):
                try:
                    with conn.begin():
                        return fn(conn)
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

    def dispose(self) -> None:
        self.engine.dispose()
