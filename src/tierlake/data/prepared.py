"""Prepared statements: a Core statement compiled once per dialect, run on the DB-API cursor.

SQLAlchemy's ``Connection.execute`` costs about 40 µs of Python per statement on top of the
driver (an execution context, parameter processing, a result object with its metadata;
``docs/benchmarks.md``, "Where checkout's CPU goes"), ten times what the driver takes for
the checkout's short statements. Checkout sends n + 6 of them, so that overhead was a
quarter of its CPU. A :class:`Prepared` statement keeps what SQLAlchemy is good at and drops
the per-call work:

* The statement is written in Core and compiled by SQLAlchemy, once per dialect, to the
  dialect's SQL and parameter style (``?`` for SQLite, ``%(name)s`` for PyMySQL and
  psycopg), so the SQL sent is byte for byte what ``Connection.execute`` would send.
* Values are converted by the column types' own processors (``TypeEngine.bind_processor``
  and ``result_processor``, as the dialect implements them): a ``UTCDateTime`` is stored
  and read back exactly as the ORM does it.
* It runs on the cursor of the SQLAlchemy :class:`~sqlalchemy.Connection` the request holds,
  inside the transaction ``Database.transaction`` began, so BEGIN (``BEGIN IMMEDIATE`` on
  SQLite), COMMIT, ROLLBACK and the pool stay SQLAlchemy's.
* A driver error becomes the same :class:`sqlalchemy.exc.DBAPIError` subclass SQLAlchemy
  raises (``IntegrityError`` for a unique key, ``OperationalError`` ...). A lost connection
  is detected with the dialect's ``is_disconnect``: the connection is invalidated, and so is
  the rest of the pool (its connections are as old as the one that died), and the error
  says ``connection_invalidated``, so ``Database.run`` can run the request again.
* When anyone listens to the engine's ``before_cursor_execute`` or ``after_cursor_execute``
  events (tracing such as OpenTelemetry's SQLAlchemy instrumentation,
  or the statement-counting tests), the same SQL goes through ``exec_driver_sql`` instead,
  so every statement is still seen, with SQLAlchemy's own execution context.

Rows come back as named tuples, with the statement's column keys as attribute names.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any]


@dataclass(frozen=True)
class _Compiled:
    """One statement as one dialect runs it."""

    sql: str
    positional: bool
    # (bind name, the value the statement fixes or None, the value's processor) in the
    # order the driver wants them: the placeholders' order (qmark), any order (pyformat).
    binds: tuple[tuple[str, bool, Any, Processor], ...]
    row: Any  # a namedtuple class, or None for a statement without a result
    result: tuple[Processor, ...]
    processed: bool  # some result column has a processor
    returning: bool  # an INSERT answers its primary key in a row (else cursor.lastrowid)


class Prepared:
    """A Core statement to run often on the cursor of the request's connection (module
    docstring). ``keys``: an INSERT's or UPDATE's columns, as ``column_keys`` to
    ``compile``; ``many``: run with a list of parameter sets (``executemany``)."""

    def __init__(self, statement: Executable, *, keys: Sequence[str] | None = None,
                 many: bool = False) -> None:
        self.statement, self.keys, self.many = statement, keys, many
        self._by_dialect: dict[str, _Compiled] = {}

    # -- the ways to run it ----------------------------------------------------------------

    def all(self, conn: Connection, params: Params) -> list[Any]:
        rows = self._run(conn, params, fetch=True)
        assert isinstance(rows, list)
        return rows

    def first(self, conn: Connection, params: Params) -> Any:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Params) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def rowcount(self, conn: Connection, params: Params | Sequence[Params]) -> int:
        """Run an UPDATE or DELETE (or, with ``many``, any statement for each parameter
        set): the rows it matched."""
        return int(self._run(conn, params, fetch=False))

    def insert(self, conn: Connection, params: Params) -> int:
        """Run a single-row INSERT: the new row's primary key."""
        return int(self._run(conn, params, fetch=False, key=True))

    # -- compiling -------------------------------------------------------------------------

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=self.keys, for_executemany=self.many)
        assert isinstance(compiled, SQLCompiler)
        problem = None
        if "POSTCOMPILE" in compiled.string:
            problem = "it has parameters rendered at execution (an IN list, a LIMIT)"
        elif compiled.insert_prefetch or compiled.update_prefetch:
            columns = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            problem = f"the columns {columns} take Python-side defaults; give them values"
        if problem:
            raise ValueError(f"cannot prepare {compiled.string!r}: {problem}")
        required = [name for name, bind in compiled.binds.items() if bind.required]
        values = compiled.construct_params(dict.fromkeys(required))
        names = (list(compiled.positiontup or ()) if dialect.positional
                 else sorted(_named_placeholders(compiled.string)))
        binds = tuple(
            (name, name not in required, values.get(name),
             compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names)
        row: Any = None
        result: tuple[Processor, ...] = ()
        if compiled.returning is None and hasattr(self.statement, "selected_columns"):
            columns = self.statement.selected_columns
            row = _row_type(list(columns.keys()))
            result = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None)
                           for c in columns)
        return _Compiled(compiled.string, dialect.positional, binds, row, result,
                         any(p is not None for p in result), bool(compiled.returning))

    # -- running ---------------------------------------------------------------------------

    def _args(self, c: _Compiled, params: Params) -> Any:
        try:
            values = [(name, params[name] if not fixed else value, proc)
                      for name, fixed, value, proc in c.binds]
        except KeyError as exc:
            raise ValueError(f"{c.sql!r} needs a value for {exc.args[0]!r}") from None
        if c.positional:
            return tuple(v if p is None or v is None else p(v) for _, v, p in values)
        return {name: v if p is None or v is None else p(v) for name, v, p in values}

    def _run(self, conn: Connection, params: Params | Sequence[Params], *, fetch: bool,
             key: bool = False) -> Any:
        c = self.compiled(conn.dialect)
        if self.many:
            args: Any = [self._args(c, p) for p in cast(Sequence[Params], params)]
        else:
            args = self._args(c, cast(Params, params))
        dispatch = conn.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            # Someone is watching the statements: SQLAlchemy's own path, so they see them.
            result = conn.exec_driver_sql(c.sql, args)
            if fetch:
                return self._rows(c, result.fetchall())
            if key:
                return result.scalar_one() if c.returning else result.lastrowid
            return result.rowcount
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.many:
                cursor.executemany(c.sql, args)
            else:
                cursor.execute(c.sql, args)
            if fetch:
                return self._rows(c, cursor.fetchall())
            if key and c.returning:
                first = cursor.fetchone()
                assert first is not None  # an INSERT ... RETURNING answers its row
                return first[0]
            return cursor.lastrowid if key else cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, exc, cursor, c.sql, args) from exc
        finally:
            cursor.close()

    @staticmethod
    def _rows(c: _Compiled, raw: Sequence[Sequence[Any]]) -> list[Any]:
        make = c.row._make
        if not c.processed:
            return [make(r) for r in raw]
        procs = c.result
        return [make([v if p is None or v is None else p(v) for p, v in zip(procs, r,
                                                                             strict=True)])
                for r in raw]


def _row_type(fields: list[str]) -> Any:
    """A row class with the columns' keys as attributes (duplicate keys are an error)."""
    return namedtuple("Row", fields)


_PLACEHOLDER = re.compile(r"(?<!%)%\(([^)]+)\)s")


def _named_placeholders(sql: str) -> set[str]:
    return set(_PLACEHOLDER.findall(sql))


def _translated(conn: Connection, exc: Exception, cursor: Any, sql: str, args: Any
                ) -> DBAPIError:
    """The driver's error as SQLAlchemy raises it; a lost connection is invalidated, and the
    pool's other connections, as old as it, are let go (SQLAlchemy's own policy)."""
    dialect = conn.dialect
    fairy = conn.connection
    lost = dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
        conn.engine.dispose(close=False)
    error = DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error,
                                connection_invalidated=lost, dialect=dialect)
    assert isinstance(error, DBAPIError)  # the driver's error is a DB-API one
    return error
