"""The Spark engine (the EMR of the design): PySpark, ``local[*]`` by default or a master URL.

The session is started once, when the engine is created, and stopped by :meth:`close`
(unless it was given). Settings that keep results equal to DuckDB's and runs offline:
session time zone UTC, a fresh ``spark.sql.warehouse.dir`` per engine, no UI, hive
partition values kept as strings, few shuffle partitions (``shuffle_partitions``), and a
driver heap of ``driver_memory`` (``spark.driver_memory``, default 4g).

Remote inputs: Spark here has no S3 connector (``hadoop-aws`` jars cannot be fetched
offline), so ``s3://`` files are read with pyarrow through fsspec (``filesystem``, e.g.
the lake's s3fs) on the driver and handed to Spark with :meth:`SparkEngine.register_arrow`.
That is fine for the store's sizes; on a real cluster, configure ``s3a`` instead.

Needs PySpark (``pip install 'tierlake[spark]'``) and Java 17 (``apt-get install -y
openjdk-17-jre-headless``); without them :class:`EngineUnavailableError` says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tierlake.analytics.engines.base import Engine, is_remote
from tierlake.analytics.errors import EngineUnavailableError

INSTALL_PYSPARK = "pip install 'tierlake[spark]'"
INSTALL_JAVA = "apt-get install -y openjdk-17-jre-headless"


def _require_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return
    if shutil.which("java") is None:
        raise EngineUnavailableError(
            f"the Spark engine needs Java 17, which was not found (no `java` on PATH, no "
            f"JAVA_HOME); install it with: {INSTALL_JAVA}"
        )


class SparkEngine(Engine):
    name: ClassVar[str] = "spark"
    reads_remote_files: ClassVar[bool] = False

    def __init__(self, master: str = "local[*]", *, session: Any | None = None,
                 filesystem: Any | None = None, shuffle_partitions: int = 8,
                 driver_memory: str = "4g", config: Mapping[str, str] | None = None) -> None:
        super().__init__(filesystem)
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the Spark engine needs PySpark; install it with: {INSTALL_PYSPARK}"
            ) from exc
        self._warehouse: str | None = None
        self._owns_session = session is None
        if session is None:
            _require_java()
            if master.startswith("local"):
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            self._warehouse = tempfile.mkdtemp(prefix="tierlake-spark-")
            builder = SparkSession.builder.master(master).appName("tierlake-analytics")
            settings = {
                "spark.sql.warehouse.dir": os.path.join(self._warehouse, "warehouse"),
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": str(shuffle_partitions),
                # Spark's default (1g) ran out of heap on product_performance at 10M order
                # lines in local mode, where the driver's heap is the executors' too.
                "spark.driver.memory": driver_memory,
                **(config or {}),
            }
            for key, value in settings.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
            session.sparkContext.setLogLevel("ERROR")
        session.conf.set("spark.sql.session.timeZone", "UTC")
        session.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        self.session = session
        self.con = ibis.pyspark.connect(session)

    def load(self, name: str, files: list[str], *, hive_partitioning: bool = False) -> ir.Table:
        if not files:
            raise ValueError("no files given")
        if any(is_remote(f) for f in files):  # no S3 connector offline: see the docstring
            return self.register_arrow(name, self.read_arrow(files,
                                                             hive_partitioning=hive_partitioning))
        reader = self.session.read.option("mergeSchema", "true")
        if hive_partitioning:
            reader = reader.option("basePath", _partition_root(files))
        reader.parquet(*files).createOrReplaceTempView(name)
        return self.con.table(name)

    def register_arrow(self, name: str, table: pa.Table) -> ir.Table:
        self.session.createDataFrame(table).createOrReplaceTempView(name)
        return self.con.table(name)

    def execute(self, expr: ir.Table) -> pa.Table:
        return self.con.to_pyarrow(expr)

    def close(self) -> None:
        if self._owns_session:
            self.session.stop()
        if self._warehouse:
            shutil.rmtree(self._warehouse, ignore_errors=True)
            self._warehouse = None


def _partition_root(files: list[str]) -> str:
    """The folder above the first ``key=value`` folder of the files (Spark's basePath)."""
    parts = files[0].split("/")
    for i, part in enumerate(parts[:-1]):
        if "=" in part:
            return "/".join(parts[:i]) or "/"
    return "/".join(parts[:-1])
