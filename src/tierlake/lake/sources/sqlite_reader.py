"""ConnectorX reads of a SQLite file, done in a child process.

ConnectorX carries its own copy of the SQLite library. Two copies of SQLite in ONE process
do not see each other's POSIX locks, so when ConnectorX closes its connection it believes it
is the last one, checkpoints and DELETES the ``-wal`` and ``-shm`` files under the Python
``sqlite3`` connections still open in that process (the app's, a test's): their next
statement fails with "disk I/O error", and concurrent writers can corrupt the file. In a
separate process the locks work as designed, so every ConnectorX read of a SQLite file goes
through one child per extract run, which streams the Arrow batches back over a pipe (Arrow
IPC): still no per-row Python, still bounded memory. The child runs :mod:`.reads` (loaded by
file path, so it does not import the rest of tierlake), ranged reads in parallel included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import IO

import pyarrow as pa

from tierlake.lake.sources import reads

_CHILD = r"""
import importlib.util, json, sys
import pyarrow as pa
spec = importlib.util.spec_from_file_location("tierlake_reads", sys.argv[1])
reads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reads)
out = sys.stdout.buffer
try:
    for line in sys.stdin:
        ask = json.loads(line)
        try:
            reader = reads.read_many(ask["url"], ask["queries"], ask["batch_rows"],
                                     ask["parallel"])
            schema = reader.schema
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # ConnectorX's Rust panics are BaseExceptions
            reader, schema = None, pa.schema([], metadata={"error": str(exc)})
        with pa.ipc.new_stream(out, schema) as stream:
            try:
                for batch in reader or ():
                    stream.write_batch(batch)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a failure mid-stream is said, never a clean end
                stream.write_batch(pa.RecordBatch.from_pylist([], schema=schema),
                                   custom_metadata={"error": str(exc)})
        out.flush()
except (BrokenPipeError, KeyboardInterrupt):  # the extract stopped or was killed
    sys.stderr.close()
"""


class SQLiteReader:
    """A child process answering ConnectorX queries on SQLite files, one at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._last: pa.RecordBatchReader | None = None

    def read(self, url: str, queries: list[str], batch_rows: int, parallel: int = 1
             ) -> pa.RecordBatchReader:
        """The rows of ``queries`` in order (see :func:`.reads.read_many`)."""
        proc = self._child()
        self._drain()
        assert proc.stdin is not None and proc.stdout is not None
        ask = json.dumps({"url": url, "queries": queries, "batch_rows": batch_rows,
                          "parallel": parallel}) + "\n"
        try:
            proc.stdin.write(ask.encode())
            proc.stdin.flush()
            reader = pa.ipc.open_stream(proc.stdout)
        except (OSError, pa.ArrowInvalid) as exc:
            self.close()
            raise RuntimeError(f"the SQLite reader process failed: {exc}") from exc
        error = (reader.schema.metadata or {}).get(b"error")
        if error is not None:
            reader.read_all()
            raise RuntimeError(error.decode())
        self._last = reader
        return pa.RecordBatchReader.from_batches(reader.schema, _checked(reader))

    def start(self) -> None:
        """Start the child now (it imports pyarrow and ConnectorX before its first answer)."""
        self._child()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            # Reader threads allocate what the main thread frees: with glibc's default of
            # one malloc arena per thread the freed memory is not reused, and RSS grows
            # with the table; two arenas keep it flat (docs/benchmarks.md).
            env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, reads.__file__], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env)
        return self._proc

    def _drain(self) -> None:
        """Finish reading the previous answer (a consumer may have stopped early)."""
        if self._last is not None:
            last, self._last = self._last, None
            for _ in last:
                pass

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._last = None
        if proc is None:
            return
        streams: list[IO[bytes] | None] = [proc.stdin, proc.stdout]
        for stream in streams:
            if stream is not None:
                stream.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _checked(reader: pa.RecordBatchStreamReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch, meta = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return
        if meta is not None and b"error" in meta:
            raise RuntimeError(meta[b"error"].decode())
        yield batch
