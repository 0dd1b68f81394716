"""The control plane behind `tierlake up`: it owns the tiers' processes.

Starts the app tier, waits until it is ready, starts the web tier pointed at
it, replaces an instance that dies (with a back-off), and runs the analytics
pipeline on its schedule. SIGINT/SIGTERM stop everything: the pipeline, then
the web tier, then the app tier, each given a grace period to finish.
"""

from __future__ import annotations

import signal
import threading
import time

import structlog

from tierlake.config import Settings
from tierlake.errors import ConfigError
from tierlake.fleet.process import Instance, port_free
from tierlake.pipeline.scheduler import PipelineScheduler

log = structlog.get_logger(__name__)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self.app = Instance("app", settings.host, settings.app_port, health_path="/api/v1/ready")
        self.web = Instance("web", settings.host, settings.web_port,
                            env={"TIERLAKE_APP_URL": self.app.url})
        self.instances = [self.app, self.web]
        self.scheduler = PipelineScheduler(settings)

    def check_ports(self) -> None:
        for inst, var in ((self.app, "TIERLAKE_APP_PORT"), (self.web, "TIERLAKE_WEB_PORT")):
            if not port_free(inst.host, inst.port):
                raise ConfigError(
                    f"port {inst.port} on {inst.host} is in use (wanted by the {inst.tier} tier); "
                    f"stop the other process or choose another port with {var}=<port>")

    def start(self) -> None:
        self.check_ports()
        for inst in self.instances:
            inst.start()
            inst.wait_healthy()

    def run(self, on_ready=None) -> None:
        """Start everything and supervise until SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            self.start()
            self.scheduler.start()
            if on_ready:
                on_ready()
            while not self._stop.wait(0.5):
                self._replace_dead()
        finally:
            self.stop()

    def _replace_dead(self) -> None:
        for inst in self.instances:
            if inst.alive() or self._stop.is_set():
                continue
            code = inst.proc.returncode if inst.proc else None
            inst.restarts += 1
            delay = min(30.0, 0.5 * 2 ** min(inst.restarts, 6))
            log.warning("instance.died", tier=inst.tier, code=code, restart_in_s=delay,
                        restarts=inst.restarts)
            if self._stop.wait(delay):
                return
            inst.start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.stop()
        for inst in reversed(self.instances):
            inst.stop()
        time.sleep(0)  # let log lines flush in order
