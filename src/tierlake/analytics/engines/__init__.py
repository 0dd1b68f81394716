"""Engines that run the jobs: DuckDB (default, embedded) and Spark (``local[*]`` or a cluster).

Import an engine from its module (``tierlake.analytics.engines.duckdb``,
``...engines.spark``), or use :func:`create_engine`; Spark's module is only imported when
asked for, as PySpark is an optional dependency (``pip install 'tierlake[spark]'``).
"""

from __future__ import annotations

from typing import Any

from tierlake.analytics.engines.base import Engine

ENGINE_NAMES = ("duckdb", "spark")
__all__ = ["ENGINE_NAMES", "Engine", "create_engine"]


def create_engine(name: str, **options: Any) -> Engine:
    """A new engine by name: ``duckdb`` or ``spark`` (options go to its constructor)."""
    if name == "duckdb":
        from tierlake.analytics.engines.duckdb import DuckDBEngine

        return DuckDBEngine(**options)
    if name == "spark":
        from tierlake.analytics.engines.spark import SparkEngine

        return SparkEngine(**options)
    raise ValueError(f"unknown analytics engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
