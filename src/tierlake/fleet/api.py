"""The control plane's HTTP face: JSON API, operator page and Prometheus ``/metrics``.

Served by the supervisor on ``fleet.control_port`` (loopback) inside its own event loop, so
every handler that touches the :class:`~tierlake.fleet.view.ControlPlane` is ``async``
and runs on that loop (the plane's objects are not thread-safe).

Why the page cannot be driven from another site: actions are POSTs that need the header
``X-CSRF-Token`` carrying a token minted when the app starts. The page gets it in a
``<meta>`` tag, the CLI from ``GET /api/csrf-token``; another origin can read neither (no
CORS) and cannot send a custom header without a preflight that is never granted. A
``Sec-Fetch-Site: cross-site`` request is refused outright, and the ``Host`` header must
name this machine, so a DNS-rebinding page cannot reach the API under a name of its own.

Errors share the store API's body and its one handler (:mod:`tierlake.app.errors`):
unknown names are 404 with the known ones listed; a desired capacity outside min..max is
400 ``ValidationError`` with SetDesiredCapacity's wording
(https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_SetDesiredCapacity.html);
a failure inside the control plane is answered with what failed, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import structlog
import uvicorn
from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from tierlake import __version__
from tierlake.app.docs import install_docs
from tierlake.app.errors import DomainError, ForbiddenError, error_body, install_error_handlers
from tierlake.asgi.edge import EdgeMiddleware
from tierlake.asgi.security_headers import security_headers
from tierlake.edge.lb.model import TargetState
from tierlake.errors import ConfigError, TierlakeError
from tierlake.fleet.view import (
    ALARM_STATES,
    CSRF_HEADER,
    ControlPlane,
    ControlPlaneError,
    FleetStatus,
    HealthStatus,
    KillResult,
    LifecycleState,
    RefreshResult,
    ScalingResult,
    check_desired_capacity,
)
from tierlake.ops.prometheus import CONTENT_TYPE, cloudwatch_families, render, state_set_family

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# The page loads only this server's files: no inline script, no inline style.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
T = TypeVar("T")


class DesiredCapacityRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True,
                              extra="forbid")
    desired_capacity: int = Field(ge=0, description="The new DesiredCapacity of the group.")


class InstanceRefreshRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True,
                              extra="forbid")
    min_healthy_percentage: int = Field(
        90, ge=0, le=100,
        description="Preferences.MinHealthyPercentage: the share of the desired capacity "
        "that stays in service and healthy while instances are replaced (AWS default 90).")


class CsrfToken(BaseModel):
    token: str = Field(description=f"Send it back in the `{CSRF_HEADER}` header of a POST.")


class ControlPlaneFailedError(ControlPlaneError):
    """The control plane raised something it should not have; answered without a traceback."""

    status, code = 500, "control_plane_failed"


class ControlPlaneRefusedError(ControlPlaneError):
    status, code = 409, "conflict"


async def _guard(action: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run one control-plane call; its unexpected failures become one-line JSON errors."""
    try:
        return await call()
    except (ControlPlaneError, DomainError):
        raise
    except TierlakeError as exc:
        refused = ControlPlaneRefusedError(f"The control plane refused to {action}: {exc}")
        code = getattr(exc, "code", None)  # e.g. the Auto Scaling group's AWS error code
        if isinstance(code, str):
            refused.code = code
            refused.status = 400 if code == "ValidationError" else 409
        raise refused from exc
    except Exception as exc:  # any bug in the plane is reported, never as a traceback
        log.exception("fleet.api.action_failed", action=action)
        raise ControlPlaneFailedError(
            f"The control plane failed to {action} ({type(exc).__name__}: {exc}); "
            "its log (event fleet.api.action_failed) has the details.") from exc


def create_control_app(plane: ControlPlane, *,
                       allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
                       refresh_seconds: float = 2.0) -> FastAPI:
    """The ASGI app of the control plane. ``allowed_hosts``: names the ``Host`` header may
    carry (add the configured host when it is not a loopback name)."""
    token = secrets.token_urlsafe(32)
    pages = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]))
    pages.filters["age"] = _age
    pages.filters["tone"] = _tone

    app = FastAPI(
        title="tierlake control plane API",
        version=__version__,
        description="The traffic path's control plane: Auto Scaling groups, load balancers "
        "and their target groups, CloudWatch alarms, Route 53 records. JSON uses AWS's field "
        f"names. POSTs need the `{CSRF_HEADER}` header from `GET /api/csrf-token`.",
        openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
        middleware=[
            Middleware(EdgeMiddleware, headers=security_headers(PAGE_CSP)),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        ],
    )
    install_error_handlers(app, security_headers(PAGE_CSP))

    @app.exception_handler(ControlPlaneError)
    async def _refused(_: Request, exc: ControlPlaneError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_docs(app)

    def require_csrf(request: Request) -> None:
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise ForbiddenError("Actions are refused from another site: open the operator "
                                 "page on the control plane itself.", code="cross_site")
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise ForbiddenError(f"Missing or wrong {CSRF_HEADER} header: get the token from "
                                 "GET /api/csrf-token and send it with each POST.",
                                 code="csrf_token_invalid")

    guarded = [Depends(require_csrf)]

    async def snapshot() -> FleetStatus:
        async def read() -> FleetStatus:
            return plane.status()
        return await _guard("report its status", read)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/fleet", response_model=FleetStatus, tags=["fleet"])
    async def fleet_status() -> FleetStatus:
        """Groups and instances, load balancers, target groups with target health, alarms,
        recent scaling activities (newest first) and DNS records."""
        return await snapshot()

    @app.get("/api/csrf-token", response_model=CsrfToken, tags=["fleet"])
    async def csrf_token(response: Response) -> CsrfToken:
        """The token POSTs must carry (readable by same-origin pages and local clients)."""
        response.headers["Cache-Control"] = "no-store"
        return CsrfToken(token=token)

    @app.post("/api/groups/{name}/desired-capacity", response_model=ScalingResult,
              tags=["actions"], dependencies=guarded)
    async def set_desired_capacity(name: str, body: DesiredCapacityRequest) -> ScalingResult:
        """SetDesiredCapacity: the group launches or terminates instances to match."""
        check_desired_capacity((await snapshot()).group(name), body.desired_capacity)
        result = await _guard(f"scale {name}",
                              lambda: plane.scale(name, body.desired_capacity))
        log.info("fleet.scaled", group=name, desired=body.desired_capacity)
        return result

    @app.post("/api/instances/{instance_id}/kill", response_model=KillResult,
              tags=["actions"], dependencies=guarded)
    async def kill_instance(instance_id: str) -> KillResult:
        """Chaos: SIGKILL the instance's process; its group notices and replaces it."""
        (await snapshot()).instance(instance_id)
        result = await _guard(f"kill {instance_id}", lambda: plane.kill(instance_id))
        log.info("fleet.killed", instance=instance_id)
        return result

    @app.post("/api/groups/{name}/instance-refresh", response_model=RefreshResult,
              tags=["actions"], dependencies=guarded)
    async def start_instance_refresh(
            name: str,
            body: Annotated[InstanceRefreshRequest | None, Body()] = None) -> RefreshResult:
        """StartInstanceRefresh: replace every instance, keeping MinHealthyPercentage."""
        wanted = body or InstanceRefreshRequest()
        (await snapshot()).group(name)
        result = await _guard(f"refresh {name}",
                              lambda: plane.refresh(name, wanted.min_healthy_percentage))
        log.info("fleet.refresh_started", group=name,
                 min_healthy_percentage=wanted.min_healthy_percentage)
        return result

    @app.get("/metrics", tags=["fleet"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {}},
                              "description": "Prometheus text exposition"}})
    async def metrics() -> Response:
        """Every CloudWatch series, target, alarm and instance state, for Prometheus."""
        status = await snapshot()
        series = await _guard("list its metrics", _async(lambda: list(plane.metric_series())))
        return Response(render(lambda: [*cloudwatch_families(series),
                                        *state_families(status)]),
                        media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        status = await snapshot()
        html = pages.get_template("fleet.html").render(
            status=status, csrf_token=token, refresh_ms=int(refresh_seconds * 1000))
        return HTMLResponse(html)

    @app.get("/fleet.fragment", include_in_schema=False)
    async def fragment() -> HTMLResponse:
        """The page's live part alone: the page's script swaps it in every few seconds."""
        status = await snapshot()
        return HTMLResponse(pages.get_template("_status.html").render(status=status),
                            headers={"Cache-Control": "no-store"})

    return app


class _LoopServer(uvicorn.Server):
    """uvicorn without its signal handling: the supervisor owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlServer:
    """The control app served by uvicorn on the running loop, as a supervisor component.

    Why not ``uvicorn.Server.serve()`` as is: in the main thread it replaces the SIGINT and
    SIGTERM handlers with its own and raises the signal again once it stops, which would take
    Ctrl-C away from the supervisor's drain-then-stop. Here uvicorn never touches signals;
    ``stop()`` ends it. The socket is bound here, so a taken port is a one-line error.
    """

    name = "control API"

    def __init__(self, app: ASGIApp, host: str, port: int, *,
                 start_timeout: float = 10.0) -> None:
        self.app, self.host, self.port, self.start_timeout = app, host, port, start_timeout
        self._server: _LoopServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"port {self.port} on {self.host} is in use (wanted by the control plane's "
                f"API: {exc.strerror}); stop the other process or choose another port with "
                "TIERLAKE_FLEET__CONTROL_PORT=<port>") from exc
        self._socket, self.port = sock, sock.getsockname()[1]
        self._server = _LoopServer(uvicorn.Config(self.app, log_config=None,
                                                  access_log=False, lifespan="off"))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise ConfigError(f"the control plane's API did not start on {self.url}; "
                                  "its log says why")
            await asyncio.sleep(0.01)
        log.info("fleet.api_started", url=self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await self._task
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - stopping goes on regardless
                log.error("fleet.api_stop_failed", error=f"{type(exc).__name__}: {exc}")
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None


def _async(call: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def run() -> T:
        return call()
    return run


def state_families(status: FleetStatus) -> list[Metric]:
    """Target, alarm and instance states as gauges (the groups' sizes come as CloudWatch's
    AWS/AutoScaling GroupDesiredCapacity ... series, published by the groups)."""
    targets = state_set_family(
        "tierlake_target_state", "ALB target health state (TargetHealth.State) per target",
        ["target_group", "target_id", "port"], [s.value for s in TargetState],
        (((tg.target_group_name, t.target.id, str(t.target.port)),
          t.target_health.state.value) for tg in status.target_groups for t in tg.targets))
    in_flight = GaugeMetricFamily("tierlake_target_in_flight_requests",
                                  "Requests sent to the target and not yet answered",
                                  labels=["target_group", "target_id", "port"])
    for tg in status.target_groups:
        for t in tg.targets:
            in_flight.add_metric([tg.target_group_name, t.target.id, str(t.target.port)],
                                 t.in_flight)
    alarms = state_set_family(
        "tierlake_alarm_state", "CloudWatch alarm state (StateValue) per alarm",
        ["alarm_name"], ALARM_STATES,
        (((a.alarm_name,), a.state_value) for a in status.alarms))
    instances = state_set_family(
        "tierlake_instance_state", "Auto Scaling instance LifecycleState per instance",
        ["auto_scaling_group_name", "instance_id"], get_args(LifecycleState),
        (((g.auto_scaling_group_name, i.instance_id), i.lifecycle_state)
         for g in status.auto_scaling_groups for i in g.instances))
    health = state_set_family(
        "tierlake_instance_health_status", "Auto Scaling instance HealthStatus per instance",
        ["auto_scaling_group_name", "instance_id"], get_args(HealthStatus),
        (((g.auto_scaling_group_name, i.instance_id), i.health_status)
         for g in status.auto_scaling_groups for i in g.instances))
    return [targets, in_flight, alarms, instances, health]


# -- page helpers -------------------------------------------------------------------------------

_TONES = {
    "InService": "ok", "healthy": "ok", "OK": "ok", "Healthy": "ok", "Successful": "ok",
    "Unhealthy": "bad", "unhealthy": "bad", "ALARM": "bad", "Failed": "bad",
    "draining": "warn", "Cancelled": "muted", "INSUFFICIENT_DATA": "muted",
    "unused": "muted", "unavailable": "muted", "Terminated": "muted",
}


def _tone(state: Any) -> str:
    """A CSS class for a state: ok, bad, warn (in transition), muted, pending."""
    text = str(getattr(state, "value", state))
    if text in _TONES:
        return _TONES[text]
    if text.startswith("Terminat") or text.startswith("Detach"):
        return "warn"
    return "pending"  # Pending*, initial, InProgress ...


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"

