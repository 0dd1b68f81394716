"""Route 53 health checks (``CreateHealthCheck``), run on asyncio.

Kept from Route 53 (https://docs.aws.amazon.com/Route53/latest/APIReference/API_HealthCheckConfig.html
and https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/dns-failover-determining-health-of-endpoints.html):
the types ``HTTP`` (healthy on a 2xx or 3xx status), ``HTTP_STR_MATCH`` (also needs
``SearchString`` in the first 5,120 bytes of the body) and ``TCP`` (a connection is
established); ``IPAddress``, ``Port``, ``ResourcePath``, ``FullyQualifiedDomainName`` (the
Host header), ``RequestInterval``, ``FailureThreshold`` (default 3, 1 to 10: the status
changes after that many consecutive checks say otherwise), ``Inverted`` and ``Disabled``
(a disabled check is healthy, or unhealthy when inverted, and sends nothing); the statuses
``Healthy``/``Unhealthy``; a status report of the last observations in Route 53's wording
(``GetHealthCheckStatus``). Changed for one machine: one checker instead of many regions;
``RequestInterval`` may be any value from 0.1 s (Route 53: 10 or 30 s; default 1 s here);
a check times out after ``timeout_seconds`` (default: the smaller of 4 s and 80 % of the
interval; Route 53: 4 s to connect, 2 s more for the status). A new check counts as
healthy until ``FailureThreshold`` checks fail. HTTPS is left out (nothing here serves TLS).

Each check is its own asyncio task, so a slow endpoint delays no other check.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

import httptools
import structlog

from tierlake.edge.dns.errors import InvalidInputError, NoSuchHealthCheckError

log = structlog.get_logger(__name__)

HealthStatus = Literal["Healthy", "Unhealthy"]
CheckType = Literal["HTTP", "HTTP_STR_MATCH", "TCP"]
SEARCH_BYTES = 5120  # Route 53 searches the first 5,120 bytes of the body
OBSERVATIONS_KEPT = 10
USER_AGENT = "Amazon Route 53 Health Check Service; tierlake"


@dataclass(frozen=True)
class HealthCheckConfig:
    """``HealthCheckConfig`` of ``CreateHealthCheck`` (snake_case names)."""

    ip_address: str
    port: int
    type: CheckType = "HTTP"
    resource_path: str = "/"
    fully_qualified_domain_name: str | None = None
    search_string: str | None = None
    request_interval: float = 1.0
    failure_threshold: int = 3
    inverted: bool = False
    disabled: bool = False
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ("HTTP", "HTTP_STR_MATCH", "TCP"):
            raise InvalidInputError(f"health check Type {self.type!r} is not supported; use "
                                    "HTTP, HTTP_STR_MATCH or TCP")
        if not 1 <= self.port <= 65535:
            raise InvalidInputError(f"health check Port {self.port} is out of range; use 1 "
                                    "to 65535")
        if not self.resource_path.startswith("/") or len(self.resource_path) > 255:
            raise InvalidInputError(f"ResourcePath {self.resource_path!r} must start with '/' "
                                    "and be at most 255 characters")
        if self.type == "HTTP_STR_MATCH" and not self.search_string:
            raise InvalidInputError("an HTTP_STR_MATCH health check needs a SearchString "
                                    "(at most 255 characters)")
        if self.search_string is not None and len(self.search_string) > 255:
            raise InvalidInputError("SearchString is at most 255 characters")
        if self.request_interval < 0.1:
            raise InvalidInputError(f"RequestInterval {self.request_interval} s is too short; "
                                    "use at least 0.1 s (Route 53: 10 or 30)")
        if not 1 <= self.failure_threshold <= 10:
            raise InvalidInputError(f"FailureThreshold {self.failure_threshold} is out of "
                                    "range; use 1 to 10")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise InvalidInputError("timeout_seconds must be positive")

    @property
    def timeout(self) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return min(4.0, 0.8 * self.request_interval)


@dataclass(frozen=True)
class HealthCheckObservation:
    """One check's result, as ``GetHealthCheckStatus`` reports it."""

    checked_time: float  # epoch seconds
    status: str  # "Success: HTTP Status Code 200, OK", "Failure: Connection refused..."
    success: bool


class HealthCheck:
    """One health check: its settings, status and recent observations."""

    def __init__(self, health_check_id: str, config: HealthCheckConfig,
                 caller_reference: str) -> None:
        self.id = health_check_id
        self.config = config
        self.caller_reference = caller_reference
        self.observations: deque[HealthCheckObservation] = deque(maxlen=OBSERVATIONS_KEPT)
        self.checks_done = 0
        self._endpoint_healthy = True
        self._streak = 0  # consecutive results that disagree with the current status
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> HealthStatus:
        healthy = True if self.config.disabled else self._endpoint_healthy
        return "Healthy" if healthy != self.config.inverted else "Unhealthy"

    @property
    def reason(self) -> str:
        """The last observation's words, or why nothing is observed."""
        if self.config.disabled:
            return "Disabled: no checks are sent"
        return self.observations[-1].status if self.observations else "Not checked yet"

    def status_report(self) -> dict[str, object]:
        """The check as ``GetHealthCheck`` plus ``GetHealthCheckStatus`` would show it."""
        return {
            "Id": self.id,
            "CallerReference": self.caller_reference,
            "Type": self.config.type,
            "IPAddress": self.config.ip_address,
            "Port": self.config.port,
            "ResourcePath": self.config.resource_path,
            "RequestInterval": self.config.request_interval,
            "FailureThreshold": self.config.failure_threshold,
            "Inverted": self.config.inverted,
            "Disabled": self.config.disabled,
            "Status": self.status,
            "Reason": self.reason,
            "HealthCheckObservations": [
                {"StatusReport": {"Status": o.status, "CheckedTime": o.checked_time}}
                for o in reversed(self.observations)],
        }

    def _record(self, success: bool, words: str) -> None:
        before = self.status
        self.checks_done += 1
        self.observations.append(HealthCheckObservation(time.time(), words, success))
        if success == self._endpoint_healthy:
            self._streak = 0
        else:
            self._streak += 1
            if self._streak >= self.config.failure_threshold:
                self._endpoint_healthy, self._streak = success, 0
        if self.status != before:
            log.info("dns.health_check", health_check_id=self.id, status=self.status,
                     previous=before, reason=words,
                     endpoint=f"{self.config.ip_address}:{self.config.port}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if not self.config.disabled:
                try:
                    async with asyncio.timeout(self.config.timeout):
                        success, words = await _PROBES[self.config.type](self.config)
                except TimeoutError:
                    success, words = False, ("Failure: Connection timed out. The endpoint or "
                                             "the internet connection is down, or requests "
                                             "are being blocked by your firewall.")
                except OSError as exc:
                    success, words = False, _connection_failure(exc)
                except Exception as exc:  # a bug here must not end the check's task
                    log.exception("dns.health_check_failed", health_check_id=self.id)
                    success, words = False, f"Failure: Internal error ({exc!r})."
                self._record(success, words)
            await asyncio.sleep(max(0.0, self.config.request_interval
                                    - (loop.time() - started)))


def _connection_failure(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "Failure: Connection refused. The endpoint is not accepting connections."
    if isinstance(exc, ConnectionResetError):
        return "Failure: Connection reset by the endpoint."
    return f"Failure: {exc.strerror or exc}"


async def _probe_tcp(config: HealthCheckConfig) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(config.ip_address, config.port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "Success: TCP connection established."


class _Response:
    """httptools callbacks: the status line, headers done, the body's first bytes."""

    def __init__(self, want_body: bool) -> None:
        self.want_body = want_body
        self.headers_done = False
        self.complete = False
        self.body = bytearray()

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if len(self.body) < SEARCH_BYTES:
            self.body += body[: SEARCH_BYTES - len(self.body)]

    def on_message_complete(self) -> None:
        self.complete = True

    def enough(self) -> bool:
        if not self.want_body:
            return self.headers_done
        return self.complete or len(self.body) >= SEARCH_BYTES


async def _probe_http(config: HealthCheckConfig) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(config.ip_address, config.port)
    try:
        host = config.fully_qualified_domain_name or f"{config.ip_address}:{config.port}"
        writer.write(f"GET {config.resource_path} HTTP/1.1\r\nHost: {host}\r\n"
                     f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
        response = _Response(want_body=config.type == "HTTP_STR_MATCH")
        parser = httptools.HttpResponseParser(response)
        while not response.enough():
            data = await reader.read(65536)
            if not data:
                break
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                break
            except httptools.HttpParserError as exc:
                return False, f"Failure: The response is not valid HTTP ({exc})."
        if not response.headers_done:
            return False, "Failure: The endpoint closed the connection without a response."
        code = parser.get_status_code()
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = "Unknown"
        words = f"HTTP Status Code {code}, {phrase}"
        if not 200 <= code < 400:
            return False, f"Failure: {words}"
        if config.search_string is not None and config.type == "HTTP_STR_MATCH" \
                and config.search_string.encode() not in response.body:
            return False, (f"Failure: {words}. Search string '{config.search_string}' was "
                           "not found in the first 5120 bytes of the body.")
        return True, f"Success: {words}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


_PROBES = {"HTTP": _probe_http, "HTTP_STR_MATCH": _probe_http, "TCP": _probe_tcp}


class HealthChecks:
    """The account's health checks: create, update, delete, read status; ``start()`` runs
    every check (and any created later) until ``stop()``."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._running = False

    def create_health_check(self, config: HealthCheckConfig,
                            caller_reference: str | None = None) -> HealthCheck:
        """A new check (``CreateHealthCheck``); a repeated ``caller_reference`` with the
        same settings returns the existing check, as Route 53 does."""
        for check in self._checks.values():
            if caller_reference is not None and check.caller_reference == caller_reference:
                if check.config != config:
                    raise InvalidInputError(
                        f"HealthCheckAlreadyExists: caller reference {caller_reference!r} "
                        "was used for a health check with other settings; use a new one")
                return check
        check = HealthCheck(str(uuid.uuid4()), config, caller_reference or str(uuid.uuid4()))
        self._checks[check.id] = check
        if self._running:
            self._launch(check)
        return check

    def update_health_check(self, health_check_id: str, *, inverted: bool | None = None,
                            disabled: bool | None = None,
                            failure_threshold: int | None = None) -> HealthCheck:
        """``UpdateHealthCheck`` for the settings Route 53 lets change in place."""
        check = self.get(health_check_id)
        before = check.status
        config = check.config
        check.config = replace(
            config,
            inverted=config.inverted if inverted is None else inverted,
            disabled=config.disabled if disabled is None else disabled,
            failure_threshold=(config.failure_threshold if failure_threshold is None
                               else failure_threshold))
        changes = {"inverted": inverted, "disabled": disabled,
                   "failure_threshold": failure_threshold}
        changes = {k: v for k, v in changes.items() if v is not None}
        if check.status != before:
            log.info("dns.health_check", health_check_id=check.id, status=check.status,
                     previous=before, reason=f"updated: {changes}")
        return check

    def delete_health_check(self, health_check_id: str) -> None:
        check = self.get(health_check_id)
        if check._task is not None:
            check._task.cancel()
        del self._checks[health_check_id]

    def get(self, health_check_id: str) -> HealthCheck:
        try:
            return self._checks[health_check_id]
        except KeyError:
            raise NoSuchHealthCheckError(
                f"NoSuchHealthCheck: no health check has the id {health_check_id!r}") from None

    def exists(self, health_check_id: str) -> bool:
        return health_check_id in self._checks

    def is_healthy(self, health_check_id: str) -> bool:
        """A deleted check no longer keeps its records out (they count as healthy)."""
        check = self._checks.get(health_check_id)
        return check is None or check.status == "Healthy"

    def list_health_checks(self) -> list[HealthCheck]:
        return list(self._checks.values())

    def _launch(self, check: HealthCheck) -> None:
        check._task = asyncio.get_running_loop().create_task(
            check._run(), name=f"route53-health-check-{check.id}")

    async def start(self) -> None:
        self._running = True
        for check in self._checks.values():
            if check._task is None or check._task.done():
                self._launch(check)

    async def stop(self) -> None:
        self._running = False
        tasks = [c._task for c in self._checks.values() if c._task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for check in self._checks.values():
            check._task = None
