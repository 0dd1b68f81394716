"""ConnectorX reads of a SQLite file, done in a child process.

ConnectorX carries its own copy of the SQLite library. Two copies of SQLite in ONE process
do not see each other's POSIX locks, so when ConnectorX closes its connection it believes it
is the last one, checkpoints and DELETES the ``-wal`` and ``-shm`` files under the Python
``sqlite3`` connections still open in that process (the app's, a test's): their next
statement fails with "disk I/O error", and concurrent writers can corrupt the file. In a
separate process the locks work as designed, so every ConnectorX read of a SQLite file goes
through one child per extract run, which streams the Arrow batches back over a pipe (Arrow
IPC): still no per-row Python, still bounded memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import IO

import pyarrow as pa

_CHILD = r"""
import json, sys
import connectorx as cx
import pyarrow as pa
out = sys.stdout.buffer
try:
    for line in sys.stdin:
        ask = json.loads(line)
        try:
            reader = cx.read_sql(ask["url"], ask["sql"], return_type="arrow_stream",
                                 batch_size=ask["batch_rows"])
            schema = reader.schema
        except Exception as exc:
            reader, schema = None, pa.schema([], metadata={"error": str(exc)})
        with pa.ipc.new_stream(out, schema) as stream:
            if reader is not None:
                for batch in reader:
                    stream.write_batch(batch)
        out.flush()
except (BrokenPipeError, KeyboardInterrupt):  # the extract stopped or was killed
    sys.stderr.close()
"""


class SQLiteReader:
    """A child process answering ConnectorX queries on SQLite files, one at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._last: pa.RecordBatchReader | None = None

    def read(self, url: str, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        proc = self._child()
        self._drain()
        assert proc.stdin is not None and proc.stdout is not None
        ask = json.dumps({"url": url, "sql": sql, "batch_rows": batch_rows}) + "\n"
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
        return reader

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
