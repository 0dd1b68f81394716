"""Merge-on-read: the jobs read a store table as its base plus the changes not merged yet,
and see exactly what the lake's own reader (and a compaction) would, on every engine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from analytics_lake import LoggedLake

from tierlake.analytics.engines.base import Engine
from tierlake.analytics.jobs import JOBS
from tierlake.analytics.merge_on_read import LoggedTable
from tierlake.analytics.runner import _load, run_jobs
from tierlake.lake import current
from tierlake.pipeline.run import job_inputs

NEEDED = {name for job in JOBS for name in job.inputs}


def engine_view(engine: Engine, logged: LoggedLake, name: str) -> pa.Table:
    """The table as the jobs see it on ``engine``."""
    source = job_inputs(logged.lake, {name})[name]
    assert isinstance(source, LoggedTable) and source.log, f"{name}: no change log to apply"
    return engine.execute(_load(engine, JOBS[0], name, {name: source}))


def assert_same_rows(got: pa.Table, want: pa.Table, key: list[str], what: str) -> None:
    order = [(k, "ascending") for k in key]
    got = got.select(want.column_names).sort_by(order)
    want = want.sort_by(order)
    assert got.num_rows == want.num_rows, f"{what}: {got.num_rows} rows, not {want.num_rows}"
    for column in want.column_names:
        a, b = got[column], want[column]
        if pa.types.is_timestamp(b.type):  # Spark gives UTC timestamps without their zone
            a, b = a.cast(pa.timestamp("us")), b.cast(pa.timestamp("us"))
        a, b = a.to_pylist(), b.to_pylist()
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
        assert first is None, f"{what}.{column} row {first}: {a[first]!r} != {b[first]!r}"


def test_the_changes_wait_in_the_log(logged_lake: LoggedLake) -> None:
    assert {"orders", "products", "customers", "carts", "cart_items"} <= set(logged_lake.changed)
    for name in logged_lake.changed:
        todo = current.pending(logged_lake.lake, name)
        assert todo is not None and todo.rows > 0 and todo.paths, name
        base = logged_lake.lake.table("current", name).to_pyarrow_dataset().to_table()
        assert not base.equals(current.read(logged_lake.lake, name).select(base.column_names)), (
            f"{name}: the log changes nothing, so this test would prove nothing")


def test_the_engine_applies_the_log_as_the_lake_does(engine: Engine,
                                                    logged_lake: LoggedLake) -> None:
    """Each store table with changes not merged yet, as the engine's jobs see it, equals the
    lake's own view."""
    assert logged_lake.changed
    for name in logged_lake.changed:
        todo = current.pending(logged_lake.lake, name)
        assert todo is not None
        assert_same_rows(engine_view(engine, logged_lake, name),
                         current.read(logged_lake.lake, name), todo.key(name),
                         f"{engine.name} {name}")


@pytest.mark.slow
def test_compaction_changes_no_curated_figure(engine: Engine, logged_lake: LoggedLake,
                                              tmp_path: Path) -> None:
    """The jobs on base + log give the figures they give once the log is merged."""
    def run() -> dict[str, pa.Table]:
        out: dict[str, pa.Table] = {}
        run_jobs(engine, job_inputs(logged_lake.lake, NEEDED), write=out.__setitem__,
                 progress=False)
        return out

    # a copy of the lake, so the session's stays logged for the other tests
    import shutil

    from tierlake.lake import Lake

    copy = Lake(str(shutil.copytree(logged_lake.lake.root, tmp_path / "lake")))
    before = run()
    logged = LoggedLake(logged_lake.db, copy, logged_lake.changed)
    for name in logged.changed:
        info = current.compact(copy, name)
        assert info.updated + info.inserted + info.deleted > 0, name
        assert current.pending(copy, name).paths == ()  # type: ignore[union-attr]
    after: dict[str, pa.Table] = {}
    inputs = job_inputs(copy, NEEDED)
    assert not any(isinstance(v, LoggedTable) for v in inputs.values())
    run_jobs(engine, inputs, write=after.__setitem__, progress=False)
    assert before.keys() == after.keys()
    for job, table in before.items():
        assert table.num_rows > 0, job
        assert table.equals(after[job]), f"{job}: differs once the log is merged"


def test_a_table_empty_at_its_first_load_is_read_from_its_log(engine: Engine,
                                                             logged_lake: LoggedLake) -> None:
    """A store that had no orders at its first extract: the base has no files, the orders
    are all in the log."""
    lake = logged_lake.lake
    todo = current.pending(lake, "orders")
    assert todo is not None
    base = lake.table("current", "orders")
    empty_base = LoggedTable(base=(), log=todo.uris, key=("id",),
                             schema=pa.schema(base.schema().to_arrow()))  # type: ignore[union-attr]
    want = current.latest_per_key(todo.dataset().to_table(), ["id"], versioned=True)
    want = want.filter(pa.compute.equal(want["_op"], "u")).drop_columns(
        ["_op", "_extracted_at", "_batch"])
    got = engine.execute(_load(engine, JOBS[0], "orders", {"orders": empty_base}))
    assert want.num_rows > 0
    assert_same_rows(got, want, ["id"], "orders from the log alone")
