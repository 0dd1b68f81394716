"""A `limits` storage in the store's own database: counters every app instance shares.

Used when no cache (Redis, ElastiCache's role) is configured. It keeps what the fixed-window
strategy needs (``incr``, ``get``, ``get_expiry``, ``clear``), as the library's Redis storage
does: a window starts at a key's first hit and lasts ``expiry`` seconds; hits inside it add
up; the first hit after it starts a new one.

One row per key in ``rate_limit_counters``. An increment is one conditional ``UPDATE`` (the
engine's row lock makes concurrent increments add up on every backend), or an ``INSERT`` for
a key's first hit (a concurrent first hit that loses the race on the primary key retries as an
update). Expired rows are deleted now and then.
"""

from __future__ import annotations

import time
from typing import Any, cast

from limits.storage import Storage
from sqlalchemy import CursorResult, Executable, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from tierlake.data.db import Database
from tierlake.data.schema import RateLimitCounter
from tierlake.errors import DatabaseUnavailableError

_T = RateLimitCounter
PURGE_EVERY_SECONDS = 60.0


def _rowcount(s: Session, statement: Executable) -> int:
    return cast("CursorResult[Any]", s.execute(statement)).rowcount


class SQLStorage(Storage):
    """Fixed-window counters in the ``rate_limit_counters`` table of ``db``."""

    STORAGE_SCHEME = None  # built from the app's Database, not from a URI

    def __init__(self, db: Database, wrap_exceptions: bool = False) -> None:
        super().__init__(None, wrap_exceptions=wrap_exceptions)
        self.db = db
        self._next_purge = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (SQLAlchemyError, DatabaseUnavailableError)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()

        def _incr(s: Session) -> int:
            live = _T.expires_at > now
            # SET order matters on MySQL (left to right): hits reads expires_at before it moves.
            changed = _rowcount(s, update(_T).where(_T.key == key).ordered_values(
                (_T.hits, case((live, _T.hits + amount), else_=amount)),
                (_T.expires_at, case((live, _T.expires_at), else_=now + expiry)),
            ).execution_options(synchronize_session=False))
            if not changed:
                s.execute(insert(_T).values(key=key, hits=amount, expires_at=now + expiry))
            return int(s.scalar(select(_T.hits).where(_T.key == key)) or 0)

        try:
            hits = self.db.write(_incr)
        except IntegrityError:  # a concurrent first hit inserted the row: add to it
            hits = self.db.write(_incr)
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
            self.db.write(lambda s: s.execute(delete(_T).where(_T.expires_at <= now)))
        return hits

    def _live(self, key: str) -> tuple[int, float] | None:
        with self.db.read() as s:
            row = s.execute(select(_T.hits, _T.expires_at).where(
                _T.key == key, _T.expires_at > time.time())).first()
        return (int(row.hits), float(row.expires_at)) if row else None

    def get(self, key: str) -> int:
        live = self._live(key)
        return live[0] if live else 0

    def get_expiry(self, key: str) -> float:
        live = self._live(key)
        return live[1] if live else time.time()

    def check(self) -> bool:
        try:
            with self.db.read() as s:
                s.execute(select(1))
        except (SQLAlchemyError, DatabaseUnavailableError):
            return False
        return True

    def reset(self) -> int | None:
        return self.db.write(lambda s: _rowcount(s, delete(_T)))

    def clear(self, key: str) -> None:
        self.db.write(lambda s: s.execute(delete(_T).where(_T.key == key)))
