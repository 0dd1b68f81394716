"""The access-log source: the load balancers' ALB access logs into ``raw/lb/access_logs``.

What is kept of ALB access logs in S3 read by Athena (AWS, "Access logs for your Application
Load Balancer" and "Query Application Load Balancer logs"): files under
``AWSLogs/<account-id>/elasticloadbalancing/<region>/yyyy/mm/dd/`` named
``<account-id>_elasticloadbalancing_<region>_app.<name>.<id>_<end-time>_<ip>_<random>.log.gz``
(:mod:`tierlake.edge.lb.accesslog` writes them; any account and region are read), one
request a line, space-separated, ``"``-quoted fields, ``-`` for no value.

Each delivered file is loaded exactly once, whole, by the machinery shared with the
clickstream (:mod:`.delivered`): the periods are the date folders (the delivery date), a file
sorts by its date folder, then its end time, then its name, and the late window is
``late_hours`` (default 2) hours before the newest file's end time, from the day holding it
on. A chunk's files are decompressed, joined and parsed in one ``pyarrow.csv`` read (space
delimiter, ``"`` quoting, no per-line Python).

Columns: the ALB fields under Athena's column names (``alb_access_logs``), typed:

* ``time``, ``request_creation_time``: ``timestamp[us, UTC]``;
* ``client_port``, ``target_port``, ``elb_status_code``, ``target_status_code``,
  ``received_bytes``, ``sent_bytes``, ``matched_rule_priority``: ``int64``;
* ``request_processing_time``, ``target_processing_time``, ``response_processing_time``:
  ``float64`` seconds, **null where ALB writes -1** (the request was not dispatched, or the
  connection broke): an average or a percentile then skips them rather than counting -1;
* everything else a string; ``-`` (no value) is null throughout, quoted or not;
* ``request`` split as Athena does into ``request_verb``, ``request_url``,
  ``request_proto``; ``client:port`` and ``target:port`` into ip and port;

plus, for the jobs, ``load_balancer`` (the name in ``elb``, ``app/<name>/<id>``) and
``target_group`` (the name in ``target_group_arn``), and ``_source_file`` (the path under
the logs directory), ``dt`` (the delivery date ``YYYY-MM-DD``) and ``month`` (its
``YYYY-MM``, the partition column; closed months are compacted to one file).
A line with another number of fields is refused with the file named.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from tierlake.lake.errors import SourceError
from tierlake.lake.sources.column_types import UTC_US
from tierlake.lake.sources.delivered import (
    CHUNK_BYTES,
    DeliveredFilesSource,
    DeliveryLayout,
    per_line,
)

TABLE = "lb/access_logs"
APP_ID = "tierlake.access_logs"
LATE_HOURS = 2
WATERMARK_KEY = "tierlake.access_logs.watermark"
WINDOW_KEY = "tierlake.access_logs.window"
NAME = re.compile(
    r"^(?P<account>\d{12})_elasticloadbalancing_(?P<region>[a-z0-9-]+)_app\."
    r"(?P<lb>[A-Za-z0-9-]+)\.(?P<id>[0-9a-f]+)_(?P<end>\d{8}T\d{4}Z)_(?P<ip>[0-9A-Fa-f.:]+)_"
    r"(?P<random>[A-Za-z0-9]+)\.log\.gz$")
_DAY = re.compile(r"^\d{4}/\d\d/\d\d$")

# the fields of a line, in ALB's order (Athena's names); "request", "client:port" and
# "target:port" are split after parsing
FIELDS = ["type", "time", "elb", "client", "target", "request_processing_time",
          "target_processing_time", "response_processing_time", "elb_status_code",
          "target_status_code", "received_bytes", "sent_bytes", "request", "user_agent",
          "ssl_cipher", "ssl_protocol", "target_group_arn", "trace_id", "domain_name",
          "chosen_cert_arn", "matched_rule_priority", "request_creation_time",
          "actions_executed", "redirect_url", "error_reason", "target_port_list",
          "target_status_code_list", "classification", "classification_reason",
          "conn_trace_id", "transformed_host", "transformed_uri", "request_transform_status"]
_TIMES = ("request_processing_time", "target_processing_time", "response_processing_time")
_INTS = ("elb_status_code", "target_status_code", "received_bytes", "sent_bytes",
         "matched_rule_priority")
_CSV_TYPES: dict[str, pa.DataType] = {
    **{name: pa.string() for name in FIELDS},
    "time": UTC_US, "request_creation_time": UTC_US,
    **{name: pa.float64() for name in _TIMES},
    **{name: pa.int64() for name in _INTS},
}


def _lake_schema() -> pa.Schema:
    columns: list[pa.Field] = []
    for name in FIELDS:
        if name in ("client", "target"):
            columns += [pa.field(f"{name}_ip", pa.string()), pa.field(f"{name}_port", pa.int64())]
        elif name == "request":
            columns += [pa.field(n, pa.string())
                        for n in ("request_verb", "request_url", "request_proto")]
        else:
            columns.append(pa.field(name, _CSV_TYPES[name]))
    columns += [pa.field(n, pa.string())
                for n in ("load_balancer", "target_group", "_source_file", "dt")]
    return pa.schema(columns)


LAKE_SCHEMA = _lake_schema()


class DayLayout(DeliveryLayout):
    """ALB's deliveries: ``AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/<name>``;
    a period is a day ``yyyy/mm/dd`` (in every account and region folder)."""

    def key(self, relative: str) -> tuple[Any, ...]:
        *_, year, month, day, name = ["", "", "", "", *relative.split("/")]
        m = NAME.match(name)
        if m is None or not _DAY.match(f"{year}/{month}/{day}"):
            raise ValueError(f"not a delivered access-log file: {relative!r}")
        return (f"{year}/{month}/{day}", m["end"], name)

    def since(self, watermark: str, late_hours: int) -> tuple[Any, ...]:
        end = datetime.strptime(self.key(watermark)[1], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        start = end - timedelta(hours=late_hours)
        return (f"{start:%Y/%m/%d}", f"{start:%Y%m%dT%H%MZ}")

    def list_periods(self, directory: Path, since: str | None) -> list[str]:
        days: set[str] = set()
        for region in _region_dirs(directory):
            for year in _subdirs(region, 4):
                if since is not None and year < since[:4]:
                    continue
                for month in _subdirs(region / year, 2):
                    if since is not None and f"{year}/{month}" < since[:7]:
                        continue
                    days.update(f"{year}/{month}/{day}"
                                for day in _subdirs(region / year / month, 2)
                                if since is None or f"{year}/{month}/{day}" >= since)
        return sorted(days)

    def list_files(self, directory: Path, period: str) -> list[Path]:
        found = []
        for region in _region_dirs(directory):
            folder = region / period
            try:
                found += [folder / e.name for e in os.scandir(folder)
                          if e.is_file() and NAME.match(e.name)]
            except (FileNotFoundError, NotADirectoryError):
                continue
        return sorted(found, key=lambda p: (p.name.split("_")[4], p.name))

    def month(self, period: str) -> str:
        return period[:7].replace("/", "-")  # YYYY/MM/DD


def _region_dirs(directory: Path) -> list[Path]:
    root = Path(directory) / "AWSLogs"
    return [root / account / "elasticloadbalancing" / region
            for account in _subdirs(root, 12)
            for region in _names(root / account / "elasticloadbalancing")]


def _names(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder)
                      if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def _subdirs(folder: Path, digits: int) -> list[str]:
    return [n for n in _names(folder) if len(n) == digits and n.isdigit()]


class AccessLogsSource(DeliveredFilesSource):
    """Delivered ALB access-log files under ``logs_dir`` (the writer's ``directory``)."""

    name = "access_logs"
    table_name = "access_logs"
    raw_table = TABLE
    app_id = APP_ID
    watermark_key = WATERMARK_KEY
    window_key = WINDOW_KEY

    def __init__(self, logs_dir: Path, *, late_hours: int = LATE_HOURS,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(logs_dir, DayLayout(), late_hours=late_hours, chunk_bytes=chunk_bytes)

    def read_chunk(self, files: list[Path]) -> pa.Table:
        blobs = [self._decompress(path) for path in files]
        blobs = [b if not b or b.endswith(b"\n") else b + b"\n" for b in blobs]
        try:
            rows = _parse(b"".join(blobs))
        except pa.ArrowInvalid:
            for path, blob in zip(files, blobs, strict=True):  # find the file to name
                self._parse_one(path, blob)
            raise
        lines = [b.count(b"\n") for b in blobs]
        if rows.num_rows != sum(lines):  # blank lines would misalign the file names
            lines = [self._parse_one(p, b).num_rows for p, b in zip(files, blobs, strict=True)]
        names = per_line([self.relative(p) for p in files], lines)
        dates = per_line([self.layout.key(self.relative(p))[0].replace("/", "-")
                          for p in files], lines)
        return _typed(rows).append_column("_source_file", names).append_column("dt", dates)

    def _decompress(self, path: Path) -> bytes:
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(path, exc) from exc

    def _parse_one(self, path: Path, blob: bytes) -> pa.Table:
        try:
            return _parse(blob)
        except pa.ArrowInvalid as exc:
            raise self._unreadable(path, exc) from exc

    def _unreadable(self, path: Path, exc: Exception) -> SourceError:
        return SourceError(
            f"access-log file {path} cannot be read as a gzip ALB access log of "
            f"{len(FIELDS)} fields a line ({exc}); move it out of {self.directory} (neither "
            "it nor the files after it were ingested) and run again")


def _parse(data: bytes) -> pa.Table:
    return pcsv.read_csv(
        pa.BufferReader(data),
        read_options=pcsv.ReadOptions(column_names=FIELDS, block_size=8 << 20),
        parse_options=pcsv.ParseOptions(delimiter=" ", quote_char='"', double_quote=False,
                                        escape_char=False, newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(column_types=_CSV_TYPES, null_values=["-"],
                                            strings_can_be_null=True,
                                            quoted_strings_can_be_null=True))


def _split(column: pa.ChunkedArray, pattern: str) -> dict[str, pa.Array]:
    """The named groups of ``pattern`` in each value (null where the value is null)."""
    parts = pc.extract_regex(column.combine_chunks(), pattern)
    return {f.name: pc.struct_field(parts, [i]) for i, f in enumerate(parts.type)}


def _typed(rows: pa.Table) -> pa.Table:
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in FIELDS:
        col = rows[name]
        if name in ("client", "target"):
            parts = _split(col, r"^(?P<ip>.*):(?P<port>\d+)$")
            columns[f"{name}_ip"] = parts["ip"]
            columns[f"{name}_port"] = parts["port"].cast(pa.int64())
        elif name == "request":
            parts = _split(col, r"^(?P<verb>\S*) (?P<url>.*) (?P<proto>\S*)$")
            for part, out in (("verb", "request_verb"), ("url", "request_url"),
                              ("proto", "request_proto")):
                value = parts[part]
                columns[out] = pc.if_else(pc.equal(value, "-"), pa.scalar(None, pa.string()),
                                          value)
        elif name in _TIMES:
            columns[name] = pc.if_else(pc.equal(col, -1.0), pa.scalar(None, pa.float64()), col)
        else:
            columns[name] = col
    columns["load_balancer"] = _split(rows["elb"], r"^app/(?P<name>[^/]+)/")["name"]
    columns["target_group"] = _split(
        rows["target_group_arn"], r":targetgroup/(?P<name>[^/]+)/")["name"]
    schema = pa.schema([f for f in LAKE_SCHEMA if f.name in columns])
    return pa.table(columns, schema=schema)
