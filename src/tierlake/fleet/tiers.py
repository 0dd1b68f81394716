"""The registry of tiers: what `tierlake serve <tier>` and the control plane can run.

Each entry says how to build the tier's ASGI app from the settings, where its liveness
(``/health``) and readiness (``/ready``) answer, which tier it calls (its instances get
that tier's listener URL in an environment variable) and which configured port is its
listener's. Adding a tier (the BI tier next) is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tierlake.config import Settings


def _build_app(settings: Settings) -> Any:
    from tierlake.app.main import create_app

    return create_app(settings)


def _build_web(settings: Settings) -> Any:
    from tierlake.web.main import create_app

    return create_app(settings)


def _build_bi(settings: Settings) -> Any:
    from tierlake.bi.app import create_app

    return create_app(settings)


@dataclass(frozen=True)
class Tier:
    name: str
    build: Callable[[Settings], Any]  # the ASGI app
    port_setting: str  # the Settings field of its listener's port
    health_path: str = "/health"
    ready_path: str = "/ready"
    # The tier this one calls, and the variable its instances find that tier's URL in.
    calls: tuple[str, str] | None = None
    summary: str = ""

    def listener_port(self, settings: Settings) -> int:
        port: int = getattr(settings, self.port_setting)
        return port

    @property
    def port_variable(self) -> str:
        return f"TIERLAKE_{self.port_setting.upper()}"


# In dependency order: a tier is started after the tiers it calls.
TIERS: dict[str, Tier] = {
    t.name: t for t in (
        Tier("app", _build_app, "app_port", summary="the JSON API, the only tier on the database"),
        Tier("web", _build_web, "web_port", calls=("app", "TIERLAKE_APP_URL"),
             summary="the store front (HTML pages over the app tier)"),
        Tier("bi", _build_bi, "bi_port",
             summary="dashboards over the lake's curated zone (QuickSight's role), at /bi"),
    )
}
