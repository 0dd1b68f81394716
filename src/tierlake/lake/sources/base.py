"""The interface every source of the lake implements.

A source copies one system's data into the lake's ``raw`` zone (and, if it has one, keeps
a ``current`` view). Built-in sources: :mod:`.database` (the store's relational database)
and :mod:`.clickstream` (the web tier's event files). A new source (e.g. the load
balancer's access logs) is one new module with one :class:`Source` subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from tierlake.lake.store import Lake


class Progress(Protocol):
    """Where a source reports progress (the CLI's rich bars, or nothing)."""

    def start(self, table: str) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...

    def finish(self, table: str) -> None: ...


class NoProgress:
    def start(self, table: str) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        pass

    def finish(self, table: str) -> None:
        pass


@dataclass
class TableExtractInfo:
    """What one run did to one table. ``error`` is set when the table failed: a database
    table is then unchanged in the lake; a file source may have committed whole chunks of
    files before, which ``rows`` and ``files`` count."""

    source: str
    table: str
    mode: str = ""  # full | incremental | snapshot | files
    rows: int = 0  # rows appended to raw
    inserted: int = 0  # rows inserted into current
    updated: int = 0
    deleted: int = 0
    pending: int = 0  # raw rows not merged into current yet (readers apply them)
    files: int = 0  # source files ingested (file sources)
    raw_version: int | None = None
    current_version: int | None = None
    seconds: float = 0.0
    error: str | None = None


class Source(ABC):
    """One system whose data the extract copies into the lake."""

    name: str

    @abstractmethod
    def list_tables(self) -> list[str]:
        """The tables this source would extract now."""

    @abstractmethod
    def extract(
        self, lake: Lake, *, run_id: str, progress: Progress | None = None
    ) -> list[TableExtractInfo]:
        """Copy what changed since the last run; one info per table.

        A table that fails is reported with ``error`` set and left unchanged; the others
        are still extracted.
        """
