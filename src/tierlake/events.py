"""The clickstream event format: what a delivered file holds and where it lands.

The format the web tier writes (:class:`tierlake.web.clickstream.EventLog`), the seed
back-fills and the lake's clickstream source reads, kept below all three so that none of
them imports another tier. Like Kinesis Data Firehose delivering to S3:

* one delivery = one new JSON-lines file; a file is never appended to or rewritten;
* files land under a prefix taken from the *delivery* time (UTC), not from the events' own
  timestamps, so an event written at 10:59:59 may sit under ``hour=11``; readers that need
  event time use each event's ``ts``.

Layout (``source`` names the writing instance and must be unique per process)::

    <directory>/clickstream/dt=YYYY-MM-DD/hour=HH/clickstream-<source>-<YYYYmmddTHHMMSSffffff>-<seq>.jsonl

Partitions and names sort by delivery time (:func:`list_delivered` returns that order).
A file is written as a hidden temp file ``.<name>.tmp`` in the target directory, fsynced
and renamed with ``os.replace``, so a reader listing ``*.jsonl`` never sees a half-written
file.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict, get_args

PREFIX = "clickstream"
EventType = Literal[
    "page_view", "search", "add_to_cart", "remove_from_cart", "checkout", "purchase"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_PARTITION = re.compile(r"^dt=\d{4}-\d\d-\d\d/hour=\d\d$")
NAME = re.compile(r"^clickstream-(?P<source>.+)-(?P<stamp>\d{8}T\d{12})-(?P<seq>\d+)\.jsonl$")


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


def partition_of(when: datetime) -> str:
    """The hour partition ``dt=YYYY-MM-DD/hour=HH`` of a delivery at ``when`` (aware)."""
    at = when.astimezone(UTC)
    return f"dt={at:%Y-%m-%d}/hour={at:%H}"


def partition_start(partition: str) -> datetime:
    """When the hour partition ``dt=YYYY-MM-DD/hour=HH`` begins (UTC)."""
    if not _PARTITION.match(partition):
        raise ValueError(f"not an hour partition: {partition!r} (expected dt=YYYY-MM-DD/hour=HH)")
    return datetime.strptime(partition, "dt=%Y-%m-%d/hour=%H").replace(tzinfo=UTC)


def delivery_path(directory: Path, delivered_at: datetime, source: str, seq: int) -> Path:
    """Where a delivery made at ``delivered_at`` (aware, UTC) lands."""
    at = delivered_at.astimezone(UTC)
    name = f"{PREFIX}-{source}-{at:%Y%m%dT%H%M%S%f}-{seq:06d}.jsonl"
    return Path(directory) / PREFIX / partition_of(at) / name


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
    dumps = encode if not encoded else str
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


def delivery_key(relative: str) -> tuple[str, str, int, str]:
    """The delivery order of a file named by a path ending ``dt=…/hour=…/<name>`` (e.g.
    relative to the events directory): hour partition, delivery time, sequence, source."""
    *_, day, hour, name = ["", "", *relative.split("/")]
    partition = f"{day}/{hour}"
    m = NAME.match(name)
    if m is None or not _PARTITION.match(partition):
        raise ValueError(f"not a delivered file: {relative!r}")
    return (partition, m["stamp"], int(m["seq"]), m["source"])


def list_partitions(directory: Path, *, since: str | None = None) -> list[str]:
    """The hour partitions (``dt=…/hour=…``) under ``directory``, in order; with ``since``,
    only that hour and later ones: the days before it are not descended into."""
    root = Path(directory) / PREFIX
    found = []
    for day in _subdirs(root, "dt="):
        if since is not None and day < since[: len(day)]:
            continue
        found += [p for hour in _subdirs(root / day, "hour=")
                  if _PARTITION.match(p := f"{day}/{hour}") and (since is None or p >= since)]
    return found


def list_partition(directory: Path, partition: str) -> list[Path]:
    """The delivered files of one hour partition, in delivery order (temp files skipped)."""
    folder = Path(directory) / PREFIX / partition
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file() and NAME.match(e.name)]
    except FileNotFoundError:
        return []
    return [folder / n for n in sorted(names, key=lambda n: delivery_key(f"{partition}/{n}"))]


def list_delivered(directory: Path, *, since: str | None = None) -> list[Path]:
    """Delivered files under ``directory`` in delivery order (temp files skipped); with
    ``since`` (an hour partition) only those of that hour and later ones."""
    return [path for partition in list_partitions(directory, since=since)
            for path in list_partition(directory, partition)]


def _subdirs(folder: Path, prefix: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder)
                      if e.is_dir() and e.name.startswith(prefix))
    except FileNotFoundError:
        return []


def iter_events(directory: Path) -> Iterator[ClickEvent]:
    """Every delivered event, file by file in delivery order."""
    for path in list_delivered(directory):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
