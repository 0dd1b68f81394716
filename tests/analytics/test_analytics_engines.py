"""Engines start only when they can, and say how to fix what is missing."""

from __future__ import annotations

import builtins
import sys

import pytest

from tierlake.analytics.engines import create_engine
from tierlake.analytics.engines.duckdb import DuckDBEngine
from tierlake.analytics.errors import EngineUnavailableError


def test_create_engine_by_name() -> None:
    engine = create_engine("duckdb")
    try:
        assert isinstance(engine, DuckDBEngine) and engine.name == "duckdb"
    finally:
        engine.close()
    with pytest.raises(ValueError, match="duckdb, spark"):
        create_engine("presto")


def test_missing_pyspark_prints_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyspark(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    monkeypatch.delitem(sys.modules, "tierlake.analytics.engines.spark", raising=False)
    from tierlake.analytics.engines.spark import SparkEngine

    with pytest.raises(EngineUnavailableError, match=r"pip install 'tierlake\[spark\]'"):
        SparkEngine()


def test_missing_java_prints_the_apt_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    from tierlake.analytics.engines import spark

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(spark.shutil, "which", lambda name: None)
    with pytest.raises(EngineUnavailableError, match="apt-get install -y openjdk-17-jre-headless"):
        spark.SparkEngine()
