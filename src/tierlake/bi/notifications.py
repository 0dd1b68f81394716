"""The BI tier's share of the control plane: the mail catcher and the alert scheduler.

`tierlake up` runs several BI instances behind the load balancer; if each checked alerts,
each would mail every breach. So the checks (and the catcher on ``bi.smtp_port``) live in
the one control-plane process, as a component with the supervisor's lifecycle
(``await start()``, ``await stop()``), like CloudWatch evaluating alarms once for a whole
Auto Scaling group.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from tierlake.bi.alerts import AlertScheduler
from tierlake.bi.engine import BiEngine
from tierlake.bi.mail import MailCatcher, mail_dir

if TYPE_CHECKING:
    from tierlake.bi.model import Engine
    from tierlake.config import Settings

log = structlog.get_logger(__name__)
STOP_SECONDS = 30.0  # a check in progress (a report being printed) may finish


class BiNotifications:
    """Starts the catcher (when ``bi.mail_catcher``) and ``AlertScheduler.run``; stops both."""

    name = "BI mail and alerts"

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.catcher: MailCatcher | None = None
        self.scheduler: AlertScheduler | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        bi = self.settings.bi
        if bi.mail_catcher:
            catcher = MailCatcher(bi.smtp_host, bi.smtp_port, mail_dir(self.settings), bi.mail_keep)
            await asyncio.to_thread(catcher.start)
            self.catcher = catcher
        engine = self.engine
        if engine is None:
            engine = await asyncio.to_thread(BiEngine.from_settings, self.settings)
        self.scheduler = AlertScheduler(self.settings, engine)
        self._stop.clear()
        self._task = asyncio.create_task(self.scheduler.run(self._stop), name="bi-alerts")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, STOP_SECONDS)
            except TimeoutError:
                log.warning("bi.alerts_stop_timeout", seconds=STOP_SECONDS)
            self._task = None
        if self.catcher is not None:
            await asyncio.to_thread(self.catcher.stop)
            self.catcher = None
