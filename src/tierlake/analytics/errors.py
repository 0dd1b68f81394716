"""Exceptions of the analytics jobs (the EMR step)."""

from __future__ import annotations

from tierlake.errors import TierlakeError


class AnalyticsError(TierlakeError):
    """Base of the errors the analytics jobs and engines raise."""


class EngineUnavailableError(AnalyticsError, RuntimeError):
    """An engine cannot start: a package or Java is missing; the message has the install line."""


class JobError(AnalyticsError, RuntimeError):
    """A job failed; names the job and, when it can tell, the input at fault."""

    def __init__(self, job: str, message: str, *, input: str | None = None) -> None:
        self.job = job
        self.input = input
        where = f" (input {input!r})" if input else ""
        super().__init__(f"analytics job {job!r} failed{where}: {message}")
