"""A :class:`~tierlake.data.cluster.DBCluster` (MariaDB primary + semi-synchronous standby,
writer and reader endpoints) run on its own event loop in a thread, as the control plane runs
it; shared by the cluster, replica and failover tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import servers
from tierlake.data.cluster import DBCluster

T = TypeVar("T")
WAIT = 60.0  # bound for every wait; pytest-timeout bounds the tests too


class RunningCluster:
    """A :class:`DBCluster` on an event loop in a thread."""

    def __init__(self, cluster: DBCluster) -> None:
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def status(self) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            return self.cluster.status()
        return self.call(get())

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.status()["DBClusterMembers"]
                    if m["DBInstanceIdentifier"] == name)

    def close(self) -> None:
        try:
            self.call(self.cluster.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def require_mariadb() -> None:
    servers.require_binary(shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin:"
                                        + os.environ.get("PATH", "")),
                           "MariaDB server (mariadbd)", "mariadb-server")


@contextmanager
def running_cluster(**kwargs: Any) -> Iterator[RunningCluster]:
    """A started cluster in a scratch directory, stopped and removed afterwards."""
    require_mariadb()
    directory = servers.scratch_dir("db-cluster")
    running = RunningCluster(DBCluster(directory / "db-cluster", **kwargs))
    try:
        running.call(running.cluster.start())
        yield running
    finally:
        running.close()
        shutil.rmtree(directory, ignore_errors=True)


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")
