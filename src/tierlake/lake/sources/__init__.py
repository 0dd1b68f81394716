"""Sources of the lake, each a :class:`~tierlake.lake.sources.base.Source`."""

from tierlake.lake.sources.base import NoProgress, Progress, Source, TableExtractInfo

__all__ = ["NoProgress", "Progress", "Source", "TableExtractInfo"]
