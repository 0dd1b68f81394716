"""The web tier's clickstream buffer, delivered the way Kinesis Data Firehose delivers to S3.

Each web instance buffers its events in memory and *delivers* the buffer as one new
object (a JSON-lines file, in the format of :mod:`tierlake.events`) when either buffering
hint is reached: ``flush_records`` events buffered, or ``flush_seconds`` elapsed (a
background timer). A failed delivery is retried later with the events kept (up to a cap).
The event format, the file layout and :func:`~tierlake.events.list_delivered` live in
:mod:`tierlake.events`, below the web tier and the lake (re-exported here).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from tierlake.events import (
    EVENT_TYPES,
    PREFIX,
    ClickEvent,
    EventType,
    delivery_path,
    encode,
    format_ts,
    iter_events,
    list_delivered,
    make_event,
    write_delivery,
)

__all__ = ["EVENT_TYPES", "PREFIX", "ClickEvent", "EventLog", "EventType", "delivery_path",
           "format_ts", "iter_events", "list_delivered", "make_event", "write_delivery"]

log = structlog.get_logger(__name__)


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
            encode(batch)
            return batch
        except (TypeError, ValueError):
            pass
        good = []
        for event in batch:
            try:
                encode(event)
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
                 "(TIERLAKE_EVENTS__DIR); buffered events are kept and delivery is retried"),
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
