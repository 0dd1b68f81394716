"""The clickstream source: the web tier's delivered event files into ``raw/clickstream/events``.

What is kept of Kinesis Data Firehose -> S3 -> a loader: each delivered object is loaded
exactly once, whole, and a run's cost depends on the new files only, not on the history
(the machinery, watermark and late window in the commit metadata, chunks, is
:mod:`.delivered`'s).

Delivered files sort by delivery time (hour partitions ``dt=/hour=``, then the delivery
stamp in the name: :func:`tierlake.events.delivery_key`); the late window is ``late_hours``
hours before the newest file's hour (a delivery is renamed into place milliseconds after its
stamp; the window covers a web instance's clock running behind).

A chunk's files are parsed together (their bytes joined, one ``pyarrow.json`` parse, no
per-line Python). Events are parsed with the schema of :class:`~tierlake.events.ClickEvent`:
``ts`` becomes ``timestamp[us, UTC]``, ids and ``status`` ``int64``, the rest strings;
unknown fields are ignored. Rows gain ``_source_file`` (the path under the events directory),
``dt`` (the delivery date from the path; the event time is ``ts``) and ``month`` (``dt``'s
``YYYY-MM``, the partition column: closed months are compacted to one file, see
:mod:`.delivered`). A table written before the month partition stays partitioned by ``dt``
and is appended to as it is. The commit advances the app transaction
``tierlake.clickstream``.
"""

from __future__ import annotations

import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from tierlake.events import (
    ClickEvent,
    delivery_key,
    list_partition,
    list_partitions,
    partition_of,
    partition_start,
)
from tierlake.lake.errors import SourceError
from tierlake.lake.sources.column_types import UTC_US, to_utc
from tierlake.lake.sources.delivered import (
    CHUNK_BYTES,
    DeliveredFilesSource,
    DeliveryLayout,
    Listing,
    per_line,
)

__all__ = ["LATE_HOURS", "TABLE", "WATERMARK_KEY", "WINDOW_KEY", "ClickstreamSource",
           "Listing"]

TABLE = "clickstream/events"
APP_ID = "tierlake.clickstream"
LATE_HOURS = 2  # hours before the newest file's hour listed again for files delivered late
WATERMARK_KEY = "tierlake.clickstream.watermark"
WINDOW_KEY = "tierlake.clickstream.window"


def _event_schema() -> pa.Schema:
    """ClickEvent's fields as JSON gives them (``ts`` still text)."""
    fields = []
    for name, hint in typing.get_type_hints(ClickEvent).items():
        is_int = hint is int or int in typing.get_args(hint)
        fields.append(pa.field(name, pa.int64() if is_int else pa.string()))
    return pa.schema(fields)


JSON_SCHEMA = _event_schema()
LAKE_SCHEMA = pa.schema(
    [pa.field(f.name, UTC_US) if f.name == "ts" else f for f in JSON_SCHEMA]
    + [pa.field("_source_file", pa.string()), pa.field("dt", pa.string())])


class HourLayout(DeliveryLayout):
    """The web tier's deliveries: ``clickstream/dt=YYYY-MM-DD/hour=HH/<name>``."""

    def key(self, relative: str) -> tuple[Any, ...]:
        return delivery_key(relative)

    def since(self, watermark: str, late_hours: int) -> tuple[Any, ...]:
        start = partition_start(delivery_key(watermark)[0])
        return (partition_of(start - timedelta(hours=late_hours)),)

    def list_periods(self, directory: Path, since: str | None) -> list[str]:
        return list_partitions(directory, since=since)

    def list_files(self, directory: Path, period: str) -> list[Path]:
        return list_partition(directory, period)

    def month(self, period: str) -> str:
        return period[3:10]  # dt=YYYY-MM-DD/hour=HH


class ClickstreamSource(DeliveredFilesSource):
    """Delivered clickstream files under ``events_dir``."""

    name = "clickstream"
    table_name = "events"
    raw_table = TABLE
    app_id = APP_ID
    watermark_key = WATERMARK_KEY
    window_key = WINDOW_KEY

    def __init__(self, events_dir: Path, *, batch_rows: int = 100_000,
                 late_hours: int = LATE_HOURS, chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(events_dir, HourLayout(), late_hours=late_hours,
                         chunk_bytes=chunk_bytes)
        self.block_size = max(1 << 20, batch_rows * 512)  # bytes per parsed block

    @property
    def events_dir(self) -> Path:
        return self.directory

    def read_chunk(self, files: list[Path]) -> pa.Table:
        """The events of ``files``, parsed in one go, with ``_source_file`` and ``dt``."""
        blobs = [path.read_bytes() for path in files]
        blobs = [b if b.endswith(b"\n") else b + b"\n" for b in blobs]
        lines = [b.count(b"\n") for b in blobs]
        try:
            events = self._parse(b"".join(blobs))
        except (pa.ArrowInvalid, OSError):
            for path in files:  # find the file to name in the error
                self._read(path)
            raise
        if events.num_rows != sum(lines):  # a blank line would misalign the file names
            lines = [self._read(path).num_rows for path in files]
        names = per_line([self.relative(p) for p in files], lines)
        dates = per_line([_delivery_date(p) for p in files], lines)
        events = events.set_column(events.schema.get_field_index("ts"), "ts",
                                   to_utc(events["ts"].combine_chunks()))
        return (events.append_column("_source_file", names).append_column("dt", dates)
                .cast(LAKE_SCHEMA))

    def _parse(self, data: bytes | Path) -> pa.Table:
        source = pa.BufferReader(data) if isinstance(data, bytes) else data
        return pj.read_json(
            source, read_options=pj.ReadOptions(block_size=self.block_size),
            parse_options=pj.ParseOptions(explicit_schema=JSON_SCHEMA,
                                          unexpected_field_behavior="ignore"))

    def _read(self, path: Path) -> pa.Table:
        try:
            return self._parse(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(
                f"clickstream file {path} cannot be read as JSON lines ({exc}); move it out "
                f"of {self.events_dir} (neither it nor the files after it were ingested) and "
                "run again"
            ) from exc


def _delivery_date(path: Path) -> str:
    return path.parent.parent.name.removeprefix("dt=")
