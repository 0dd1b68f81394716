"""A bounded, steady load for chaos tests: a few threads sending GETs until told to stop.

Every answer is counted by status, and every failure (an error status or a transport
error) is kept with what was asked, so a test can say exactly which request failed.
The load stops by itself after ``max_seconds`` or ``max_requests``, whatever the test does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(1 for f in self.failures if "->" not in f)


class SteadyLoad:
    """``threads`` clients, each cycling through ``paths`` on ``base_url`` with keep-alive."""

    def __init__(self, base_url: str, paths: Sequence[str], *, threads: int = 4,
                 pause: float = 0.0, max_seconds: float = 120.0, max_requests: int = 200_000,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url, self.paths, self.pause = base_url, list(paths), pause
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.headers = headers or {}
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sent = itertools.count()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                          name=f"load-{i}") for i in range(threads)]

    def __enter__(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.result

    def wait_for_requests(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.result.requests < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, worker: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        paths = itertools.cycle(self.paths[worker % len(self.paths):] + self.paths)
        with httpx.Client(base_url=self.base_url, timeout=30, headers=self.headers) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if next(self._sent) >= self.max_requests:
                    return
                path = next(paths)
                try:
                    r = client.get(path)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.result.failures.append(f"GET {path}: {type(exc).__name__} {exc}")
                else:
                    with self._lock:
                        self.result.statuses[r.status_code] += 1
                        if r.status_code >= 500:
                            self.result.failures.append(
                                f"GET {path} -> {r.status_code} {r.text[:200]!r}")
                if self.pause:
                    time.sleep(self.pause)
