"""Connections to the store's database: one engine, read and write sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout; write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock
instead of failing when one upgrades a read lock. MySQL/MariaDB and PostgreSQL
run at READ COMMITTED. Transient conflicts (deadlock, lock timeout, a busy
SQLite file) are retried a few times by :meth:`Database.write`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, create_engine, event, insert
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
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
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

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError(
                    f"cannot reach the database at {safe_url(self.url)}: {exc.orig}. "
                    "Check that it is running and that TIERLAKE_DATABASE_URL is right."
                ) from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()
