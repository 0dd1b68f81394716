"""Errors of the lake and the extract; each message names what failed and the fix."""

from __future__ import annotations

from typing import Any

from tierlake.errors import TierlakeError


class LakeError(TierlakeError):
    """The lake cannot be read or written (bad URL, missing bucket, no access, full disk).

    The lake is left at its last good version: a failed write never commits.
    """


class LakeUnavailableError(LakeError, ConnectionError):
    """The S3 endpoint cannot be reached right now; trying again later may help."""

    transient = True


class SourceError(TierlakeError, ValueError):
    """A source table cannot be copied as it is (an unmappable type, no primary key)."""


class ExtractError(TierlakeError):
    """Some tables failed; the others were committed. ``info`` has every table's outcome
    (the run's :class:`~tierlake.lake.extract.ExtractInfo`; not imported here, so this module
    stays below the extract)."""

    def __init__(self, message: str, info: Any) -> None:
        super().__init__(message)
        self.info = info
