"""The pipeline's schedule inside `tierlake up` (an EventBridge-style rate schedule).

Every ``pipeline_interval_seconds`` the supervisor runs ``tierlake pipeline run``
as a child process, one at a time (a run still going when the next is due is
not started twice), so a crash or a memory spike in the pipeline never takes
the control plane down. Each run's outcome is written to the pipeline status
file that `tierlake pipeline status` reads; freshness is the age of the last
successful run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import structlog

from tierlake.config import Settings
from tierlake.pipeline.status import read_status

log = structlog.get_logger(__name__)


class PipelineScheduler:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.interval = settings.pipeline_interval_seconds
        self.settings = settings
        self.env = env or {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if not self.enabled:
            log.info("pipeline.schedule_off")
            return
        self._thread = threading.Thread(target=self._loop, name="pipeline-scheduler", daemon=True)
        self._thread.start()
        log.info("pipeline.scheduled", every_s=self.interval)

    def _loop(self) -> None:
        # First run soon after start, so a fresh system has a lake to look at.
        next_run = time.monotonic() + min(5.0, self.interval)
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            started = time.monotonic()
            self.run_once()
            next_run = started + self.interval

    def run_once(self) -> int:
        cmd = [sys.executable, "-m", "tierlake", "pipeline", "run", "--no-progress"]
        log.info("pipeline.run_started")
        self._proc = subprocess.Popen(cmd, env={**os.environ, **self.env})
        code = self._proc.wait()
        status = read_status(self.settings)
        log.info("pipeline.run_finished", code=code, ok=status.get("ok"),
                 error=status.get("error"))
        return code

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(5)
