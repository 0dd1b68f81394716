"""A steady, bounded stream of idempotent writes through an endpoint: how a failover is
measured (tests, ``bench/failover_bench.py``).

Each write inserts one row with a unique ``request_id`` unless a row with that id already
exists, so a statement that failed without the client knowing whether it committed can be
retried with the same id: an acknowledged write is present exactly once afterwards, and a
duplicate would be a real fault (the table has no unique key to hide one). The stream records
every acknowledged id, every failed attempt, and when writes resumed after a given moment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pymysql

TABLE = "failover_probe"
RETRY_PAUSE = 0.05


@dataclass
class WriteStreamInfo:
    """What the stream saw."""

    acknowledged: list[int] = field(default_factory=list)
    failed_attempts: int = 0
    errors: list[str] = field(default_factory=list)
    first_ack_after: dict[float, float] = field(default_factory=dict)


class WriteStream:
    """Insert rows 1, 2, ... through ``host:port`` from a thread until stopped or ``limit``.

    ``connection_per_write``: a new connection per write (a client that takes one from a
    pool per unit of work), else one connection kept and reopened after an error.
    """

    def __init__(self, host: str, port: int, *, user: str = "app", password: str = "app",
                 database: str = "appdb", connection_per_write: bool = False,
                 limit: int = 100_000, pause: float = 0.0) -> None:
        self.args = {"host": host, "port": port, "user": user, "password": password,
                     "database": database, "connect_timeout": 10, "read_timeout": 10,
                     "write_timeout": 10, "autocommit": True}
        self.connection_per_write = connection_per_write
        self.limit = limit
        self.pause = pause
        self.info = WriteStreamInfo()
        self._stop = threading.Event()
        self._marks: list[float] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="write-stream", daemon=True)

    def create_table(self) -> None:
        with pymysql.connect(**self.args) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT AUTO_INCREMENT "
                        "PRIMARY KEY, request_id BIGINT NOT NULL, KEY (request_id))")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> WriteStreamInfo:
        self._stop.set()
        self._thread.join(timeout)
        return self.info

    def mark(self) -> float:
        """Note now (monotonic); ``info.first_ack_after[mark]`` is set when the first write
        sent after it is acknowledged: seconds from the mark."""
        now = time.monotonic()
        with self._lock:
            self._marks.append(now)
        return now

    @property
    def count(self) -> int:
        return len(self.info.acknowledged)

    def _run(self) -> None:
        conn: pymysql.Connection | None = None
        request_id = 1
        while not self._stop.is_set() and request_id <= self.limit:
            started = time.monotonic()
            try:
                if conn is None:
                    conn = pymysql.connect(**self.args)
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} (request_id) SELECT %s FROM DUAL WHERE "
                                f"NOT EXISTS (SELECT 1 FROM {TABLE} WHERE request_id = %s)",
                                (request_id, request_id))
            except (pymysql.Error, OSError) as exc:
                self.info.failed_attempts += 1
                if len(self.info.errors) < 20:
                    self.info.errors.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(RETRY_PAUSE)
                continue  # the same request_id again
            self.info.acknowledged.append(request_id)
            now = time.monotonic()
            with self._lock:  # only a write sent after the mark counts (not one in flight)
                for mark in [m for m in self._marks if m <= started]:
                    self.info.first_ack_after[mark] = now - mark
                    self._marks.remove(mark)
            request_id += 1
            if self.connection_per_write:
                conn.close()
                conn = None
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()


def read_request_ids(host: str, port: int, *, user: str = "app", password: str = "app",
                     database: str = "appdb") -> list[int]:
    """Every request_id in the table, duplicates included, sorted."""
    with pymysql.connect(host=host, port=port, user=user, password=password,
                         database=database, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT request_id FROM {TABLE} ORDER BY request_id")
        return [int(row[0]) for row in cur.fetchall()]
