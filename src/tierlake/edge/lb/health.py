"""ALB's active health checks: one HTTP GET per target every interval, judged by a matcher.

A target group owns one :class:`HealthChecker`; the checker owns one asyncio task per
watched target, so a target that hangs until the timeout never delays the checks of the
others, and each target's first check is spread at random over the first interval so a
group of many targets does not probe them all in the same instant.

The checker only *observes*: each finished check becomes a :class:`CheckResult` handed to
the group, which counts passes and failures in a row and changes the target's state. The
results carry ALB's reason codes and descriptions, as ``DescribeTargetHealth`` shows them
(AWS, "Health checks for Application Load Balancer target groups",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html,
and the ``TargetHealth`` data type of the Elastic Load Balancing API reference):

- ``Target.ResponseCodeMismatch`` "Health checks failed with these codes: [503]"
- ``Target.Timeout`` "Request timed out"
- ``Target.FailedHealthChecks`` "Health checks failed" (connection refused, reset, ...)

The request is ALB's: ``GET <path>`` with ``User-Agent: ELB-HealthChecker/2.0`` on the
traffic port, redirects not followed (a 301 is a code like any other for the matcher), a
new connection each time (so a refused connection is seen as soon as it happens).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from tierlake.edge.lb.model import HealthCheckSettings, Reason

log = structlog.get_logger(__name__)

USER_AGENT = "ELB-HealthChecker/2.0"
# ALB accepts success codes from 200 to 499 for HTTP health checks (CreateTargetGroup,
# Matcher.HttpCode).
_MATCHER_RANGE = range(200, 500)

TIMEOUT_DESCRIPTION = "Request timed out"
FAILED_DESCRIPTION = "Health checks failed"


class MatcherError(ValueError):
    """A health-check matcher that ALB would refuse."""


def parse_matcher(matcher: str) -> frozenset[int]:
    """The HTTP codes a matcher accepts: ``"200"``, ``"200,204"``, ``"200-299"`` or a mix
    (``"200,300-399"``), each between 200 and 499 as ALB requires."""
    codes: set[int] = set()
    for part in matcher.split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise MatcherError(
                f"health-check matcher {matcher!r}: {part!r} is not an HTTP code or a range; "
                "write codes like \"200\", \"200,204\" or \"200-299\"") from None
        if first > last or first not in _MATCHER_RANGE or last not in _MATCHER_RANGE:
            raise MatcherError(
                f"health-check matcher {matcher!r}: {part!r} is outside 200-499 or an empty "
                "range; ALB accepts HTTP codes from 200 to 499, ranges written low-high")
        codes.update(range(first, last + 1))
    return frozenset(codes)


@dataclass(frozen=True)
class CheckResult:
    """One health check's outcome, in ``DescribeTargetHealth``'s words when it failed."""

    passed: bool
    reason: Reason | None = None
    description: str = ""
    status_code: int | None = None


def mismatch_description(code: int) -> str:
    return f"Health checks failed with these codes: [{code}]"


class HealthChecker:
    """Runs a target group's active checks; ``on_result(target_id, result)`` gets each one.

    ``client`` may be shared with others; the checker never closes it.
    """

    def __init__(self, settings: HealthCheckSettings, client: httpx.AsyncClient, *,
                 on_result: Callable[[str, CheckResult], None],
                 rng: random.Random | None = None, group: str = "") -> None:
        self.settings = settings
        self.codes = parse_matcher(settings.matcher)
        self._client = client
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._group = group
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def check(self, host: str, port: int) -> CheckResult:
        """One check of ``host:port`` now, bounded by the timeout as a whole (connect, send,
        headers and body): a target that accepts and never answers is a timeout."""
        url = f"http://{host}:{port}{self.settings.path}"
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                response = await self._client.get(
                    url, headers={"User-Agent": USER_AGENT}, follow_redirects=False,
                    timeout=self.settings.timeout_seconds)
        except (TimeoutError, httpx.TimeoutException):
            return CheckResult(False, Reason.TIMEOUT, TIMEOUT_DESCRIPTION)
        except httpx.HTTPError:
            return CheckResult(False, Reason.FAILED_HEALTH_CHECKS, FAILED_DESCRIPTION)
        if response.status_code in self.codes:
            return CheckResult(True, status_code=response.status_code)
        return CheckResult(False, Reason.RESPONSE_CODE_MISMATCH,
                           mismatch_description(response.status_code), response.status_code)

    def watch(self, target_id: str, host: str, port: int) -> None:
        """Start checking a target (again: a previous watch of the same id is replaced)."""
        self.unwatch(target_id)
        first = self._rng.uniform(0, self.settings.interval_seconds)
        self._tasks[target_id] = asyncio.get_running_loop().create_task(
            self._loop(target_id, host, port, first), name=f"health:{self._group}:{target_id}")

    def unwatch(self, target_id: str) -> None:
        task = self._tasks.pop(target_id, None)
        if task is not None:
            task.cancel()

    @property
    def watched(self) -> list[str]:
        return list(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, target_id: str, host: str, port: int, first_delay: float) -> None:
        await asyncio.sleep(first_delay)
        interval = self.settings.interval_seconds
        while True:
            started = time.monotonic()
            try:
                result = await self.check(host, port)
            except Exception:  # a bug must not end the target's checks silently
                log.exception("lb.health_check_error", group=self._group, target=target_id)
                result = CheckResult(False, Reason.INTERNAL_ERROR,
                                     "Health checks failed due to an internal error")
            try:
                self._on_result(target_id, result)
            except Exception:
                log.exception("lb.health_result_error", group=self._group, target=target_id)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
