"""The lake: Delta Lake tables on a local directory or on S3 (the S3 of the AWS design).

Decisions (made once, kept in the modules that carry them out):

* Table format: Delta Lake through ``deltalake`` (delta-rs); a write is one atomic commit
  and a writer's watermark rides in the same commit (:mod:`tierlake.lake.tables`).
* Streams are written as Parquet by pyarrow, files of ~8 MiB, bounded memory per writer
  (:mod:`tierlake.lake.files`); one stream into several tables is read once, each writer's
  queue bounded (:mod:`tierlake.lake.fanout`).
* Where the lake lives (a directory or ``s3://bucket/prefix``) and the errors naming a fix:
  :mod:`tierlake.lake.storage`. The catalog and the layout: :mod:`tierlake.lake.catalog`.
* ``current/`` tables are read merge-on-read (:mod:`tierlake.lake.current`).

:class:`Lake` puts these together; the names below stay importable from here.
"""

from __future__ import annotations

import pyarrow as pa

from tierlake.lake import catalog, current
from tierlake.lake.catalog import LAYOUT, TableInfo, describe_layout
from tierlake.lake.fanout import WriteTarget
from tierlake.lake.tables import ZONES, Tables

__all__ = ["LAYOUT", "ZONES", "Lake", "TableInfo", "WriteTarget", "describe_layout"]


class Lake(Tables):
    """The lake at ``url``: a local directory or ``s3://bucket/prefix``."""

    def read_arrow(self, zone: str, name: str, columns: list[str] | None = None) -> pa.Table:
        """The whole current version as an Arrow table; for ``current`` tables, with the
        changes not merged yet applied (:func:`tierlake.lake.current.read`)."""
        if zone == "current":
            return current.read(self, name, columns)
        return self.read_table(zone, name, columns)

    def list_tables(self) -> list[TableInfo]:
        """Every table of every zone with its version, schema, size and last commit."""
        return catalog.list_tables(self)
