"""The fan-out writer: one stream written into several tables, read once.

:func:`write_many` hands each batch to one writer thread per table (each writes through
``Lake.write``), through a queue per writer bounded to ``AHEAD`` batches (:class:`_Tee`):
the producer waits while ANY writer's queue is full, so a slow writer slows the stream
instead of letting its queue grow with the table. Memory per writer: ``AHEAD`` batches here,
plus what its own writer holds (``files.READ_AHEAD`` batches and a row group being filled).

Why that cannot deadlock: a writer's progress must never wait on another writer's pull. The
pyarrow writer (:class:`tierlake.lake.files.FileWrite`) pulls its queue on a Python thread of
its own, so a writer waiting on its empty queue holds nothing another writer needs.
delta-rs's ``write_deltalake`` pulls on its runtime's worker threads instead: a pull waiting
on an empty queue holds a worker, and another delta-rs writer's work queued behind it
starves (commit d01649c: a producer blocked on writer A's full queue while writer B's pull
waited on its empty one hung). So at most ONE target of a fan-out may go through
``write_deltalake`` (``Tables.write_many`` checks it): its own pull never waits while its
queue is full, and the other writers need no worker of delta-rs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa

AHEAD = 2  # batches queued per writer, at most

class Write(Protocol):
    """``Lake.write``: commit one stream into one table; its new version."""

    def __call__(self, zone: str, name: str, data: pa.RecordBatchReader, *,
                 mode: Literal["append", "overwrite"] = ..., metadata: dict[str, str] | None = ...,
                 watermark: tuple[str, int] | None = ...) -> int: ...


def write_many(write: Write, data: pa.RecordBatchReader, targets: list[WriteTarget]
               ) -> list[int]:
    """Write one stream into several tables, reading it once; their new versions.

    Each target takes its columns of every batch and is written by its own thread
    (pyarrow and delta-rs encode and upload without the GIL), through a queue per writer
    of at most :data:`AHEAD` batches, so memory stays bounded whatever the writers' pace
    and the stream is read once. At most one target may be written by ``write_deltalake``
    (module docstring). If the stream fails, no target commits.
    Each target commits on its own, so a failure at commit time can leave some committed
    and not others: callers must recover from any subset (the extract does, see
    ``sources/database.py``).
    """
    if len(targets) == 1:
        t = targets[0]
        return [write(t.zone, t.name, _project(data, t.columns), mode=t.mode,
                      metadata=t.metadata, watermark=t.watermark)]
    tee = _Tee(len(targets))
    feeds = [_Feed(write, t, data.schema, tee, i) for i, t in enumerate(targets)]
    for feed in feeds:
        feed.thread.start()
    failure: BaseException | None = None
    try:
        for batch in data:
            tee.put_all([batch.select(feed.target.columns) for feed in feeds])
    except BaseException as exc:  # noqa: BLE001 - handed to the writers, raised below
        failure = exc
    last = _Abort(failure) if failure or any(tee.ended) else _END
    tee.put_all([last] * len(feeds), wait=False)
    for feed in feeds:
        feed.thread.join()
    if isinstance(failure, _FeedFailed):
        failure = None  # a writer failed: its own error is raised below
    if failure is not None:
        raise failure
    errors = [f.error for f in feeds if f.error is not None]
    if errors:  # the writer that failed first, not those it stopped
        raise next((e for e in errors if not isinstance(e, _FeedFailed)), errors[0])
    return [feed.version for feed in feeds if feed.version is not None]  # all, none failed


@dataclass(frozen=True)
class WriteTarget:
    """One table :func:`write_many` writes: which columns, how, with what metadata."""

    zone: str
    name: str
    columns: list[str]
    mode: Literal["append", "overwrite"] = "append"
    metadata: dict[str, str] | None = None
    watermark: tuple[str, int] | None = None


_END = object()


class _Abort:
    def __init__(self, cause: BaseException | None) -> None:
        self.cause = cause


class _FeedFailed(Exception):
    """A writer of :func:`write_many` failed; the stream stops."""


class _Tee:
    """The queues of :func:`write_many`: one per writer, each of at most ``ahead`` batches,
    under one lock. The producer waits while any queue is full (see the module docstring
    for why that cannot deadlock); ``peak`` keeps each queue's largest size."""

    def __init__(self, writers: int, ahead: int = AHEAD) -> None:
        self.cond = threading.Condition()
        self.queues: list[deque[Any]] = [deque() for _ in range(writers)]
        self.ended = [False] * writers  # writer i's thread returned (early means it failed)
        self.ahead = ahead
        self.peak = [0] * writers

    def put_all(self, items: list[Any], *, wait: bool = True) -> None:
        with self.cond:
            while wait and not any(self.ended) and any(
                    len(q) >= self.ahead for q in self.queues):
                self.cond.wait()
            if wait and any(self.ended):
                raise _FeedFailed("a writer of the stream failed")
            for i, (q, item) in enumerate(zip(self.queues, items, strict=True)):
                q.append(item)
                if wait:  # batches; the end of the stream (no wait) is one marker more
                    self.peak[i] = max(self.peak[i], len(q))
            self.cond.notify_all()

    def get(self, i: int) -> Any:
        with self.cond:
            while not self.queues[i]:
                self.cond.wait()
            item = self.queues[i].popleft()
            self.cond.notify_all()
            return item

    def end(self, i: int) -> None:
        with self.cond:
            self.ended[i] = True
            self.queues[i].clear()
            self.cond.notify_all()


class _Feed:
    """One target of :func:`write_many`: the thread writing it from its tee queue."""

    def __init__(self, write: Write, target: WriteTarget, schema: pa.Schema, tee: _Tee,
                 index: int) -> None:
        self.write, self.target, self.tee, self.index = write, target, tee, index
        self.schema = pa.schema([schema.field(c) for c in target.columns])
        self.error: BaseException | None = None
        self.version: int | None = None
        self.thread = threading.Thread(target=self._write, name=f"tierlake-write-{target.name}")

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.tee.get(self.index)
            if item is _END:
                return
            if isinstance(item, _Abort):
                raise item.cause or _FeedFailed("another writer of the same stream failed")
            yield item

    def _write(self) -> None:
        t = self.target
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
        try:
            self.version = self.write(t.zone, t.name, reader, mode=t.mode,
                                           metadata=t.metadata, watermark=t.watermark)
        except BaseException as exc:  # noqa: BLE001 - raised by write_many
            self.error = exc
        finally:
            self.tee.end(self.index)


def _project(data: pa.RecordBatchReader, columns: list[str]) -> pa.RecordBatchReader:
    if data.schema.names == columns:
        return data
    schema = pa.schema([data.schema.field(c) for c in columns])
    return pa.RecordBatchReader.from_batches(schema, (b.select(columns) for b in data))
