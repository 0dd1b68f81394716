"""Locust's figures as ``tierlake load`` shows them: live from its CSV files, final from its
JSON file.

Locust writes ``<prefix>_stats_history.csv`` every second (``--csv-full-history``; the
locustfile makes it flush every second too): the ``Aggregated`` rows give the live view's
users, current req/s and current percentiles. At the end ``--json-file`` holds every
request's response-time histogram, from which the summary computes exact overall p50/p95/p99
(the CSV's last row may miss the final second), and the locustfile writes the errors it saw
to ``<prefix>_errors.json``; errors are grouped by kind (``HTTP 502``, ``connection
refused``, ``timeout``, or the journey's own message).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FleetSample", "LiveFigures", "LoadSummary", "failure_kind", "in_service_counts",
           "read_live", "summarize"]

_HTTP = re.compile(r"\bHTTP (\d{3})\b|\b(\d{3}) (?:Client|Server) Error\b")


@dataclass
class LiveFigures:
    users: int = 0
    rps: float = 0.0
    failures_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    failures: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class FleetSample:
    t: float  # seconds since the load started
    in_service: dict[str, int]  # group -> instances InService


@dataclass
class LoadSummary:
    target: str
    note: str
    users: int
    duration_s: float
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    failures_by_kind: dict[str, int]
    pages: dict[str, dict[str, Any]]  # "GET /p/[slug]" -> requests, failures, p50, p95
    instances: list[FleetSample]
    locust_exit_code: int | None
    interrupted: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failure_kind(message: str) -> str:
    """A failure's kind: the HTTP status, the socket error, or the journey's own words."""
    found = _HTTP.search(message)
    if found:
        return f"HTTP {found.group(1) or found.group(2)}"
    low = message.lower()
    for needle, kind in (("refused", "connection refused"), ("reset", "connection reset"),
                         ("remotedisconnected", "connection closed"),
                         ("aborted", "connection reset"), ("timed out", "timeout"),
                         ("timeout", "timeout")):
        if needle in low:
            return kind
    return message.strip()[:100] or "unknown"


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # Locust writes N/A before the first answer


def read_live(prefix: Path) -> LiveFigures:
    """The latest ``Aggregated`` row of the history file and the failures so far."""
    figures = LiveFigures()
    history = Path(f"{prefix}_stats_history.csv")
    if history.exists():
        last: dict[str, str] | None = None
        with history.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    last = row
        if last is not None:
            figures.users = int(last.get("User Count") or 0)
            figures.rps = _number(last.get("Requests/s", "")) or 0.0
            figures.failures_per_s = _number(last.get("Failures/s", "")) or 0.0
            figures.p50_ms = _number(last.get("50%", ""))
            figures.p95_ms = _number(last.get("95%", ""))
            figures.p99_ms = _number(last.get("99%", ""))
            figures.requests = int(last.get("Total Request Count") or 0)
            figures.failures = int(last.get("Total Failure Count") or 0)
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        kinds: Counter[str] = Counter()
        with failures.open(newline="") as f:
            for row in csv.DictReader(f):
                kinds[failure_kind(row.get("Error", ""))] += int(row.get("Occurrences") or 0)
        figures.failures_by_kind = dict(kinds.most_common())
    return figures


def _percentile(histogram: Counter[float], total: int, q: float) -> float | None:
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def _histogram(entries: list[dict[str, Any]]) -> Counter[float]:
    merged: Counter[float] = Counter()
    for entry in entries:
        times = entry.get("response_times") or {}
        pairs = times.items() if isinstance(times, dict) else times
        for ms, count in pairs:
            merged[float(ms)] += int(count)
    return merged


def summarize(prefix: Path, *, target: str, note: str, users: int,
              instances: list[FleetSample], exit_code: int | None,
              interrupted: bool) -> LoadSummary:
    """The run's summary from Locust's final JSON file (and the live files if it has none:
    Locust killed before it could write it)."""
    json_file = Path(f"{prefix}.json")
    entries: list[dict[str, Any]] = []
    if json_file.exists():
        try:
            entries = json.loads(json_file.read_text() or "[]")
        except ValueError:
            entries = []
    errors_file = Path(f"{prefix}_errors.json")
    kinds: Counter[str] = Counter()
    if errors_file.exists():
        for error in json.loads(errors_file.read_text() or "[]"):
            kinds[failure_kind(str(error.get("error", "")))] += int(error.get("occurrences", 0))
    if not entries:  # no final file: the last live figures are all there is
        live = read_live(prefix)
        return LoadSummary(target, note, users, 0.0, live.requests, live.failures, live.rps,
                           live.p50_ms, live.p95_ms, live.p99_ms,
                           dict(kinds.most_common()) or live.failures_by_kind, {}, instances,
                           exit_code, interrupted)
    requests = sum(int(e["num_requests"]) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    start = min(float(e["start_time"]) for e in entries)
    end = max(float(e.get("last_request_timestamp") or e["start_time"]) for e in entries)
    duration = max(end - start, 1e-3)
    merged = _histogram(entries)
    pages: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: -int(e["num_requests"])):
        hist = _histogram([entry])
        n = int(entry["num_requests"])
        pages[f"{entry['method']} {entry['name']}"] = {
            "requests": n, "failures": int(entry["num_failures"]),
            "p50_ms": _percentile(hist, n, 0.50), "p95_ms": _percentile(hist, n, 0.95)}
    return LoadSummary(
        target, note, users, round(duration, 3), requests, failures,
        round(requests / duration, 2), _percentile(merged, requests, 0.50),
        _percentile(merged, requests, 0.95), _percentile(merged, requests, 0.99),
        dict(kinds.most_common()) or read_live(prefix).failures_by_kind, pages, instances,
        exit_code, interrupted)


def in_service_counts(status: Any) -> dict[str, int]:
    """Instances ``InService`` per Auto Scaling group in the control plane's ``/api/fleet``
    answer (``groups[].instances[].LifecycleState``, AWS's names; snake_case accepted)."""
    if not isinstance(status, dict):
        return {}
    groups = status.get("groups") or status.get("AutoScalingGroups") or []
    counts: dict[str, int] = {}
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, dict):
            continue
        name = str(group.get("AutoScalingGroupName") or group.get("name") or "?")
        instances = group.get("Instances") or group.get("instances") or []
        counts[name] = sum(
            1 for i in instances if isinstance(i, dict) and
            (i.get("LifecycleState") or i.get("lifecycle_state") or i.get("state")) == "InService")
    return counts
