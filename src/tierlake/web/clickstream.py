"""The web tier's clickstream event log, delivered the way Kinesis Data Firehose delivers to S3.

Each web instance buffers its events in memory and *delivers* the buffer as one new
object (a JSON-lines file) when either buffering hint is reached: ``flush_records``
events buffered, or ``flush_seconds`` elapsed (a background timer). Like Firehose:

* one delivery = one new file; a file is never appended to or rewritten afterwards;
* files land under a time-partitioned prefix taken from the *delivery* time (UTC),
  not from the events' own timestamps, so an event written at 10:59:59 may sit under
  ``hour=11``; readers that need event time use each event's ``ts``;
* a failed delivery is retried later with the events kept (up to a cap).

Layout (``source`` names the writing instance and must be unique per process)::

    <directory>/clickstream/dt=YYYY-MM-DD/hour=HH/clickstream-<source>-<YYYYmmddTHHMMSSffffff>-<seq>.jsonl

A file is written as a hidden temp file ``.<name>.tmp`` in the target directory,
fsynced and renamed with ``os.replace``, so a reader globbing ``*.jsonl`` never sees a
half-written file.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict, get_args

import structlog

log = structlog.get_logger(__name__)

PREFIX = "clickstream"
EventType = Literal[
    "page_view", "search", "add_to_cart", "remove_from_cart", "checkout", "purchase"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_NAME = re.compile(r"^clickstream-(?P<source>.+)-(?P<stamp>\d{8}T\d{12})-(?P<seq>\d+)\.jsonl$")


class ClickEvent(TypedDict):
    """One line of the clickstream (a JSON object)."""

    event_id: str  # uuid4 hex
    ts: str  # ISO-8601 UTC with microseconds, e.g. 2025-11-28T19:02:11.120034Z
    event_type: EventType
    session_id: str
    visitor_id: str
    customer_id: int | None
    method: str
    path: str
    status: int
    product_id: int | None
    category: str | None  # category slug
    query: str | None
    order_id: int | None
    referrer: str | None
    user_agent: str | None
    source: str  # the web instance that wrote it


def format_ts(when: datetime) -> str:
    """``2025-11-28T19:02:11.120034Z`` (always microseconds, always UTC)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given for an event timestamp; use datetime.now(UTC)")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(
    event_type: EventType,
    *,
    path: str,
    session_id: str,
    visitor_id: str,
    source: str,
    method: str = "GET",
    status: int = 200,
    ts: datetime | None = None,
    customer_id: int | None = None,
    product_id: int | None = None,
    category: str | None = None,
    query: str | None = None,
    order_id: int | None = None,
    referrer: str | None = None,
    user_agent: str | None = None,
) -> ClickEvent:
    """A :class:`ClickEvent` with a fresh ``event_id`` and ``ts`` defaulting to now."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event_type {event_type!r}; expected one of {EVENT_TYPES}")
    return ClickEvent(
        event_id=uuid.uuid4().hex, ts=format_ts(ts or datetime.now(UTC)), event_type=event_type,
        session_id=session_id, visitor_id=visitor_id, customer_id=customer_id, method=method,
        path=path, status=status, product_id=product_id, category=category, query=query,
        order_id=order_id, referrer=referrer, user_agent=user_agent, source=source,
    )


def delivery_path(directory: Path, delivered_at: datetime, source: str, seq: int) -> Path:
    """Where a delivery made at ``delivered_at`` (aware, UTC) lands."""
    at = delivered_at.astimezone(UTC)
    name = f"{PREFIX}-{source}-{at:%Y%m%dT%H%M%S%f}-{seq:06d}.jsonl"
    return Path(directory) / PREFIX / f"dt={at:%Y-%m-%d}" / f"hour={at:%H}" / name


def write_delivery(
    directory: Path,
    events: Iterable[ClickEvent] | Iterable[str],
    *,
    delivered_at: datetime,
    source: str,
    seq: int,
    fsync: bool = True,
    encoded: bool = False,
) -> Path:
    """Write ``events`` as ONE new delivered file, atomically; returns its path.

    ``encoded=True`` means ``events`` are already JSON texts (one object each, no newline).
    ``fsync=False`` skips the fsyncs (for bulk back-fills, where a crash means seeding
    again); the rename still makes the file appear whole or not at all.
    """
    if "/" in source or not source:
        raise ValueError(f"source must be a non-empty name without '/', got {source!r}")
    final = delivery_path(directory, delivered_at, source, seq)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    dumps = _encode if not encoded else str
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(dumps(e) + "\n" for e in events))
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(final.parent)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _sort_key(path: Path) -> tuple[str, str, str, int, str]:
    m = _NAME.match(path.name)
    assert m is not None
    return (path.parent.parent.name, path.parent.name, m["stamp"], int(m["seq"]), m["source"])


def list_delivered(directory: Path) -> list[Path]:
    """Delivered files under ``directory`` in delivery order (temp files skipped)."""
    root = Path(directory) / PREFIX
    if not root.is_dir():
        return []
    found = [
        p for p in root.glob("dt=*/hour=*/*.jsonl")
        if not p.name.startswith(".") and _NAME.match(p.name)
    ]
    return sorted(found, key=_sort_key)


def iter_events(directory: Path) -> Iterator[ClickEvent]:
    """Every delivered event, file by file in delivery order."""
    for path in list_delivered(directory):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


class EventLog:
    """A web instance's buffered clickstream writer (see the module docstring).

    ``record`` is thread-safe and cheap: it appends to a list under a lock. Reaching
    ``flush_records`` wakes the timer thread (or, before :meth:`start`, delivers in the
    caller's thread). After a failed delivery, automatic retries wait ``flush_seconds``;
    the events stay buffered, at most ``max_buffered`` of them (the oldest are dropped
    beyond that, with a warning).
    """

    def __init__(
        self,
        directory: Path,
        *,
        flush_seconds: float = 60,
        flush_records: int = 500,
        source: str,
        max_buffered: int = 100_000,
    ) -> None:
        if flush_seconds <= 0 or flush_records < 1 or max_buffered < flush_records:
            raise ValueError("need flush_seconds > 0 and 1 <= flush_records <= max_buffered")
        if "/" in source or not source:
            raise ValueError(f"source must be a non-empty name without '/', got {source!r}")
        self.directory = Path(directory)
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self.source = source
        self.max_buffered = max_buffered
        self.dropped = 0
        self._buffer: list[ClickEvent] = []
        self._lock = threading.Lock()  # guards _buffer, _retry_at
        self._deliver_lock = threading.Lock()  # one delivery at a time, in order
        self._seq = 0
        self._retry_at = 0.0  # monotonic; automatic deliveries wait until then after a failure
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producer side ----------------------------------------------------------------------

    def record(self, event: ClickEvent) -> None:
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.flush_records and time.monotonic() >= self._retry_at
        if full:
            if self._thread is not None and self._thread.is_alive():
                self._wake.set()
            else:
                self._deliver(automatic=True)

    def buffered(self) -> int:
        with self._lock:
            return len(self._buffer)

    # -- delivery ---------------------------------------------------------------------------

    def flush(self) -> Path | None:
        """Deliver the buffer now; the new file's path, or None (nothing buffered, or failed)."""
        return self._deliver(automatic=False)

    def _deliver(self, *, automatic: bool) -> Path | None:
        with self._deliver_lock:
            with self._lock:
                if automatic and time.monotonic() < self._retry_at:
                    return None
                batch, self._buffer = self._buffer, []
            batch = self._encodable(batch)
            if not batch:
                return None
            self._seq += 1
            try:
                path = write_delivery(self.directory, batch, delivered_at=datetime.now(UTC),
                                      source=self.source, seq=self._seq)
            except OSError as exc:
                self._requeue(batch, exc)
                return None
            with self._lock:
                self._retry_at = 0.0
            log.debug("clickstream.delivered", path=str(path), events=len(batch))
            return path

    def _encodable(self, batch: list[ClickEvent]) -> list[ClickEvent]:
        """``batch`` less the events JSON cannot encode (a caller's bug), which are logged."""
        try:
            _encode(batch)
            return batch
        except (TypeError, ValueError):
            pass
        good = []
        for event in batch:
            try:
                _encode(event)
                good.append(event)
            except (TypeError, ValueError) as exc:
                log.error("clickstream.event_dropped", error=str(exc), record=repr(event)[:300],
                          fix="record only JSON values (str, int, None) in a ClickEvent")
        return good

    def _requeue(self, batch: list[ClickEvent], exc: OSError) -> None:
        with self._lock:
            self._buffer[:0] = batch
            self._retry_at = time.monotonic() + self.flush_seconds
            excess = len(self._buffer) - self.max_buffered
            if excess > 0:
                del self._buffer[:excess]
                self.dropped += excess
            kept = len(self._buffer)
        log.error(
            "clickstream.delivery_failed",
            directory=str(self.directory),
            error=f"{type(exc).__name__}: {exc}",
            buffered=kept,
            fix=(f"make {self.directory} an existing, writable directory with free space "
                 "(TIERLAKE_EVENTS_DIR); buffered events are kept and delivery is retried"),
        )
        if excess > 0:
            log.warning("clickstream.events_dropped", dropped=excess, total_dropped=self.dropped,
                        max_buffered=self.max_buffered, directory=str(self.directory))

    # -- timer ------------------------------------------------------------------------------

    def start(self) -> EventLog:
        """Start the background timer thread that delivers at least every ``flush_seconds``."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"clickstream-{self.source}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        while not self._stop.is_set():
            woken = self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:  # the timer is rate-limited by itself, so it ignores the retry back-off
                self._deliver(automatic=False)
            except Exception:  # never let the timer die
                log.exception("clickstream.timer_error", directory=str(self.directory))
            if not woken or time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_seconds

    def close(self) -> Path | None:
        """Stop the timer and deliver what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        path = self.flush()
        left = self.buffered()
        if left:
            log.error("clickstream.undelivered_on_close", events=left,
                      directory=str(self.directory),
                      fix=f"make {self.directory} writable and call flush() again, or these "
                      "events are lost when the process exits")
        return path

    def __enter__(self) -> EventLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
