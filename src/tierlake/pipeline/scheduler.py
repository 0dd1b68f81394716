"""The pipeline's schedule inside `tierlake up` (an EventBridge-style rate schedule).

A control-plane component. Every ``pipeline.interval_seconds`` it runs
``tierlake pipeline run`` as a child process, one at a time, so a crash or a memory spike in
the pipeline never takes the control plane down. The child leads its own process group and
dies with the control plane, its own children included (:mod:`tierlake.fleet.lifeline`).
A run past ``pipeline.timeout_seconds`` is terminated, then killed, and recorded as failed.
A tick while a manual run holds the pipeline lock is skipped (the log says who holds it).
No run starts once :meth:`stop` has been called.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

import structlog

from tierlake.config import Settings
from tierlake.fleet.lifeline import die_with_parent
from tierlake.pipeline.lock import EXIT_LOCKED, describe_holder, lock_path
from tierlake.pipeline.status import read_status, write_status

log = structlog.get_logger(__name__)
KILL_GRACE_SECONDS = 10.0


class PipelineScheduler:
    name = "pipeline scheduler"

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.interval = settings.pipeline.interval_seconds
        self.timeout = settings.pipeline.timeout_seconds
        self.env = env or {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.last_pid: int | None = None  # of the last run started (its process group's id)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    async def start(self) -> None:
        if not self.enabled:
            log.info("pipeline.schedule_off")
            return
        self._task = asyncio.create_task(self._loop(), name="pipeline-scheduler")
        log.info("pipeline.scheduled", every_s=self.interval, timeout_s=self.timeout)

    async def _loop(self) -> None:
        # First run soon after start, so a fresh system has a lake to look at.
        await asyncio.sleep(min(5.0, self.interval))
        while not self._stopping:
            started = time.monotonic()
            await self.run_once()
            await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

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
        proc = self._proc
        if proc is not None and proc.returncode is None:
            log.info("pipeline.run_stopping", pid=proc.pid)
            await self._end(proc)
            write_status(self.settings, ok=False, engine=self.settings.engine,
                         error="stopped: `tierlake up` shut down during the run")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
