"""Retention: old data files and old log entries leave the lake.

What is kept of Delta Lake's ``VACUUM`` (and of S3 lifecycle rules that expire old objects):
every table of every zone is vacuumed with a retention period (``vacuum.retention_hours``,
default 168 h = 7 days, Delta's ``delta.deletedFileRetentionDuration``): a data file that no
version of the last period references is deleted, so time travel to any version of that
period still works, and a folder read as plain Parquet holds the latest version's rows plus
at most that period's rewritten files. Files of failed writes (never committed) go too.

The log: a table gets a checkpoint (``NNN.checkpoint.parquet``) once ``vacuum.checkpoint_interval``
commits were made since the last one, then ``cleanup_metadata()`` removes the log entries
older than the table's ``delta.logRetentionDuration`` (30 days) that the checkpoint makes
unnecessary. Readers then load the table from the checkpoint and a few entries, whatever
its age.

The pipeline run calls :func:`vacuum_lake` when the last vacuum is older than
``vacuum.interval_hours`` (the time is kept in the pipeline's status file);
``tierlake pipeline vacuum`` runs it on demand, with ``--dry-run`` to list what would go.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import structlog

from tierlake.lake.store import Lake

log = structlog.get_logger(__name__)
DEFAULT_RETENTION_HOURS = 168
DEFAULT_CHECKPOINT_INTERVAL = 100


@dataclass(frozen=True)
class VacuumInfo:
    """What vacuuming one table removed (or, in a dry run, would remove)."""

    zone: str
    name: str
    files: int
    bytes: int
    checkpoint: int | None  # the version a checkpoint was written for, if one was
    seconds: float

    @property
    def table(self) -> str:
        return f"{self.zone}/{self.name}"


def vacuum_lake(lake: Lake, *, retention_hours: int = DEFAULT_RETENTION_HOURS,
                checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
                dry_run: bool = False) -> list[VacuumInfo]:
    """Vacuum every table of every zone, and checkpoint and clean up the logs due."""
    return [vacuum_table(lake, t.zone, t.name, retention_hours=retention_hours,
                         checkpoint_interval=checkpoint_interval, dry_run=dry_run)
            for t in lake.list_tables()]


def vacuum_table(lake: Lake, zone: str, name: str, *,
                 retention_hours: int = DEFAULT_RETENTION_HOURS,
                 checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
                 dry_run: bool = False) -> VacuumInfo:
    began = time.perf_counter()
    uri = lake.uri(zone, name)
    table = lake.table(zone, name)
    if table is None:
        return VacuumInfo(zone, name, 0, 0, None, 0.0)
    fs = lake.filesystem()
    root = uri.removeprefix("s3://")
    with lake.translate_errors("vacuum", uri):
        # delta-rs refuses less than the table's retention unless told; a setting below
        # 7 days is the operator's choice, so it is honoured.
        listed = table.vacuum(retention_hours=retention_hours, dry_run=True,
                              enforce_retention_duration=False)
        # delta-rs lists the log's expired tombstones, also those whose file is gone
        sizes = [s for s in (_size(fs, f"{root}/{p}") for p in listed) if s is not None]
        doomed, size = sizes, sum(sizes)
        checkpoint = None
        if not dry_run:
            if doomed:
                table.vacuum(retention_hours=retention_hours, dry_run=False,
                             enforce_retention_duration=False)
            if table.version() - _last_checkpoint(fs, root) >= checkpoint_interval:
                table.create_checkpoint()
                table.cleanup_metadata()
                checkpoint = table.version()
    info = VacuumInfo(zone, name, len(doomed), size, checkpoint,
                      round(time.perf_counter() - began, 3))
    log.info("lake.vacuumed", table=info.table, files=info.files, bytes=info.bytes,
             dry_run=dry_run, checkpoint=checkpoint, seconds=info.seconds)
    return info


def _size(fs: Any, path: str) -> int | None:
    """The file's size, or None if it is not there."""
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return None


def _last_checkpoint(fs: Any, root: str) -> int:
    """The version of the table's last checkpoint (-1: none)."""
    try:
        with fs.open(f"{root}/_delta_log/_last_checkpoint", "rb") as fh:
            return int(json.load(fh)["version"])
    except FileNotFoundError:
        return -1

