"""ConnectorX reads, one query or a table split into key ranges read in parallel.

A full read of a table with an integer primary key is split into ranges of the key
(``WHERE pk >= a AND pk < b``), read by ``parallel`` threads (ConnectorX releases the GIL),
and handed on in key order. Order matters: the lake's files then hold narrow bands of keys
(the Delta writer may still shuffle batches within a file), so a later MERGE of recent
changes only rewrites the files whose key range it touches. At most
``parallel + 1`` ranges are in memory at once, whatever the table's size.

This module imports only ConnectorX and pyarrow: the SQLite reader process runs it too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import connectorx as cx
import pyarrow as pa

MAX_RANGES = 4096


def key_ranges(lo: int, hi: int, rows_per_range: int, rows: int | None = None
               ) -> list[tuple[int, int]]:
    """Half-open ranges ``[a, b)`` covering ``lo..hi`` (at most :data:`MAX_RANGES`).

    With ``rows`` (how many rows the table holds), as many ranges as ``rows`` needs at
    ``rows_per_range`` each: keys far apart (ids 1 and 9*10^11) are one range, not
    thousands of empty ones, each a query and, for ConnectorX, a connection."""
    if hi < lo:
        return []
    span = hi - lo + 1
    count = MAX_RANGES if rows is None else min(MAX_RANGES, max(1, -(-rows // rows_per_range)))
    width = max(rows_per_range, -(-span // count))
    return [(a, min(a + width, hi + 1)) for a in range(lo, hi + 1, width)]


def read_one(url: str, sql: str, batch_rows: int) -> pa.RecordBatchReader:
    return cx.read_sql(url, sql, return_type="arrow_stream", batch_size=batch_rows)


def read_many(url: str, queries: list[str], batch_rows: int, parallel: int
              ) -> pa.RecordBatchReader:
    """The rows of ``queries`` (same columns), in their order, ``parallel`` at a time."""
    if len(queries) <= 1 or parallel <= 1:
        return _sequential(url, queries, batch_rows)
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="tierlake-read")
    pending: deque[Future[pa.Table]] = deque()
    todo = iter(queries)

    def fill() -> None:
        for sql in todo:
            pending.append(pool.submit(cx.read_sql, url, sql, return_type="arrow"))
            if len(pending) >= parallel:
                return

    fill()
    try:
        first = pending.popleft().result()
    except BaseException:
        _cancel(pool, pending)
        raise
    schema = first.schema

    def batches() -> Iterator[pa.RecordBatch]:
        table: pa.Table | None = first
        try:
            while table is not None:
                fill()  # keep the readers busy while this range is handed on
                yield from _conform(table, schema).to_batches(batch_rows)
                table = pending.popleft().result() if pending else None
        finally:
            _cancel(pool, pending)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _sequential(url: str, queries: list[str], batch_rows: int) -> pa.RecordBatchReader:
    readers = [read_one(url, queries[0], batch_rows)]
    schema = readers[0].schema

    def batches() -> Iterator[pa.RecordBatch]:
        yield from readers[0]
        for sql in queries[1:]:
            for batch in read_one(url, sql, batch_rows):
                yield from _conform(pa.Table.from_batches([batch]), schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A range read whose inferred types differ (say, a column all NULL there)."""
    return table if table.schema == schema else table.cast(schema)


def _cancel(pool: ThreadPoolExecutor, pending: deque[Future[pa.Table]]) -> None:
    for future in pending:
        future.cancel()
    pending.clear()
    pool.shutdown(wait=True, cancel_futures=True)
