"""The pipeline's schedule inside `tierlake up` (an EventBridge-style rate schedule).

A control-plane component. Every ``pipeline.interval_seconds`` it runs
``tierlake pipeline run`` as a child process, one at a time, so a crash or a memory spike in
the pipeline never takes the control plane down. The child leads its own process group and
dies with the control plane, its own children included (:mod:`tierlake.fleet.lifeline`).
A run past ``pipeline.timeout_seconds`` is terminated, then killed, and recorded as failed.
A tick while a manual run holds the pipeline lock is skipped (the log says who holds it).
No run starts once :meth:`stop` has been called.

Between full runs, every ``pipeline.micro_batch_seconds`` (start to start), it asks the
micro-batch worker (:mod:`tierlake.pipeline.microbatch`, one warm child process started on
the first batch, restarted if it dies or hangs past the timeout) for one micro-batch. The one
loop runs both, so a micro-batch never overlaps a full run of this scheduler; the first
action is a full run (a fresh system's first extract loads everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from tierlake.config import Settings
from tierlake.fleet.lifeline import die_with_parent
from tierlake.pipeline.lock import EXIT_LOCKED, describe_holder, lock_path
from tierlake.pipeline.status import read_status, update_status, write_status

log = structlog.get_logger(__name__)
KILL_GRACE_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 60.0  # the longest pause after micro-batches that kept failing


class PipelineScheduler:
    name = "pipeline scheduler"

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.interval = settings.pipeline.interval_seconds
        self.micro = settings.pipeline.micro_batch_seconds
        self.timeout = settings.pipeline.timeout_seconds
        self.env = env or {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._worker: asyncio.subprocess.Process | None = None
        self.last_pid: int | None = None  # of the last run started (its process group's id)
        self.worker_pid: int | None = None  # of the micro-batch worker last started

    @property
    def enabled(self) -> bool:
        """Full runs on; micro-batches run between them (an interval of 0 turns both off)."""
        return self.interval > 0

    async def start(self) -> None:
        if not self.enabled:
            log.info("pipeline.schedule_off")
            return
        self._task = asyncio.create_task(self._loop(), name="pipeline-scheduler")
        log.info("pipeline.scheduled", every_s=self.interval, micro_batch_s=self.micro,
                 timeout_s=self.timeout)

    async def _loop(self) -> None:
        # First run soon after start, so a fresh system has a lake to look at.
        await asyncio.sleep(min(5.0, self.interval))
        next_full = time.monotonic()
        failures = 0  # micro-batches failed in a row: each doubles the pause, up to a minute
        while not self._stopping:
            now = time.monotonic()
            if now >= next_full:
                await self.run_once()
                next_full, failures = now + self.interval, 0
                if self.micro <= 0:  # the badge's "next refresh" is the next full run
                    self._announce(next_full)
                continue
            pause = min(MAX_BACKOFF_SECONDS, self.micro * 2 ** failures)
            wake = min(now + pause, next_full) if self.micro > 0 else next_full
            if self.micro > 0:
                result = await self.micro_once(_wall(wake))
                failures = 0 if result is not None and result.get("ok") else failures + 1
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    def _announce(self, due: float) -> None:
        with contextlib.suppress(OSError):
            update_status(self.settings, next_refresh_at=_wall(due).isoformat(),
                          refresh_seconds=self.interval)

    async def micro_once(self, next_refresh_at: datetime | None = None) -> dict[str, Any] | None:
        """One micro-batch by the worker; its outcome (``MicroBatchInfo`` as a dict), or
        None when none ran (stopping, or the worker died or hung: then it is replaced on the
        next batch and the failure is in the status file)."""
        if self._stopping:
            return None
        worker = self._worker
        if worker is not None and worker.returncode is not None:  # died between batches
            log.warning("pipeline.micro_batch_worker_exited", pid=worker.pid,
                        code=worker.returncode)
        if worker is None or worker.returncode is not None:
            worker = self._worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tierlake.pipeline.microbatch",
                "--supervised-by", str(os.getpid()),
                env={**os.environ, **self.env}, start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                preexec_fn=die_with_parent)
            self.worker_pid = worker.pid
            log.info("pipeline.micro_batch_worker_started", pid=worker.pid)
        assert worker.stdin is not None and worker.stdout is not None
        request = {"next_refresh_at": next_refresh_at.isoformat() if next_refresh_at else None}
        try:
            worker.stdin.write((json.dumps(request) + "\n").encode())
            await worker.stdin.drain()
            line = await asyncio.wait_for(worker.stdout.readline(), self.timeout)
        except TimeoutError:
            await self._end(worker)
            self._micro_failed(f"the micro-batch took longer than "
                               f"TIERLAKE_PIPELINE__TIMEOUT_SECONDS ({self.timeout:g} s) and its "
                               "worker was stopped; the next batch starts a new one")
            return None
        except (ConnectionError, RuntimeError):  # the worker's stdin is closed: it died
            line = b""
        if not line:
            if not self._stopping:
                await self._end(worker)
                self._micro_failed(f"the micro-batch worker exited ({worker.returncode}); "
                                   "its log lines above say why; the next batch starts a new one")
            return None
        result: dict[str, Any] = json.loads(line)
        return result

    def _micro_failed(self, error: str) -> None:
        log.error("pipeline.micro_batch_failed", error=error)
        with contextlib.suppress(OSError):
            update_status(self.settings, micro_batch={
                "started_at": datetime.now(UTC).isoformat(), "ok": False, "error": error})

    async def run_once(self) -> int | None:
        """One run; None when none was started (stopping)."""
        if self._stopping:  # checked with no await before the start: stop() cannot slip in
            return None
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tierlake", "pipeline", "run", "--no-progress",
            "--supervised-by", str(os.getpid()),
            env={**os.environ, **self.env}, start_new_session=True,
            preexec_fn=die_with_parent)
        self.last_pid = proc.pid
        log.info("pipeline.run_started", pid=proc.pid)
        try:
            code = await asyncio.wait_for(proc.wait(), self.timeout)
        except TimeoutError:
            await self._end(proc)
            error = (f"the run took longer than TIERLAKE_PIPELINE__TIMEOUT_SECONDS "
                     f"({self.timeout:g} s) and was stopped; raise the setting if runs of this "
                     "size need longer")
            write_status(self.settings, ok=False, error=error, engine=self.settings.engine,
                         seconds=self.timeout)
            log.error("pipeline.run_timed_out", pid=proc.pid, timeout_s=self.timeout)
            return proc.returncode
        finally:
            self._proc = None
        if code == EXIT_LOCKED:
            log.warning("pipeline.run_skipped", reason="another run holds the pipeline lock",
                        holder=describe_holder(lock_path(self.settings)))
            return code
        status = read_status(self.settings)
        log.info("pipeline.run_finished", code=code, ok=status.get("ok"),
                 error=status.get("error"))
        return code

    async def _end(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM (the run kills its process group), then SIGKILL to the group."""
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def stop(self) -> None:
        self._stopping = True
        worker = self._worker
        if worker is not None and worker.returncode is None:
            assert worker.stdin is not None
            worker.stdin.close()  # end of input: an idle worker exits at once
            try:
                await asyncio.wait_for(worker.wait(), 2.0)
            except TimeoutError:  # in the middle of a batch: stop it
                await self._end(worker)
        proc = self._proc
        if proc is not None and proc.returncode is None:
            log.info("pipeline.run_stopping", pid=proc.pid)
            await self._end(proc)
            write_status(self.settings, ok=False, engine=self.settings.engine,
                         error="stopped: `tierlake up` shut down during the run")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _wall(monotonic: float) -> datetime:
    """The wall-clock time of a ``time.monotonic()`` instant."""
    return datetime.now(UTC) + timedelta(seconds=monotonic - time.monotonic())
