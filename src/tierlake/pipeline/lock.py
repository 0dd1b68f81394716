"""One pipeline run at a time on this machine: a file lock under ``<data_dir>/pipeline/``.

`tierlake pipeline run|extract|jobs|compact` and the scheduler inside `tierlake up` take
``pipeline.lock`` with ``flock`` before they touch the lake (the clickstream source and the
compaction assume no other run is writing). The holder writes its pid, command and start
time into the file, so a refused run can say who holds it. The kernel drops the lock when the
holder dies, even by SIGKILL, so a crashed run never leaves a stale lock. It covers ONE
machine: runs on two machines sharing a lake are not kept apart by it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tierlake.config import Settings
from tierlake.errors import TierlakeError


class PipelineLockedError(TierlakeError):
    """Another pipeline run holds the lock (`tierlake` exits with :data:`EXIT_LOCKED`)."""

    transient = True


EXIT_LOCKED = 75  # EX_TEMPFAIL: the scheduler reads it as "skipped, someone else runs"


def lock_path(settings: Settings) -> Path:
    return settings.data_dir / "pipeline" / "pipeline.lock"


def describe_holder(path: Path) -> str:
    """Who holds the lock, as a person reads it ("pid 12 (tierlake pipeline run) since ...")."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        holder = {}
    if not holder:
        return "another pipeline run"
    return f"pid {holder.get('pid')} ({holder.get('command')}) since {holder.get('started_at')}"


@contextmanager
def pipeline_lock(settings: Settings, command: str | None = None) -> Iterator[None]:
    """Hold the pipeline lock for the block, or raise :class:`PipelineLockedError` at once."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    f: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineLockedError(
                f"another pipeline run holds {path}: {describe_holder(path)}; wait for it to "
                "finish (`tierlake pipeline status` shows the last outcome), or stop it") from None
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(),
                   "command": command or " ".join(["tierlake", *sys.argv[1:]]),
                   "started_at": datetime.now(UTC).isoformat(timespec="seconds")}, f)
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()

