"""CloudWatch in one process: a bounded metric store, metric alarms and their evaluator.

Keeps of Amazon CloudWatch what scaling and the operator view rely on:

* metrics named by namespace, metric name and dimensions (``PutMetricData``), and their
  statistics per period (``GetMetricStatistics``): ``Average``, ``Sum``, ``SampleCount``,
  ``Minimum``, ``Maximum`` and percentiles ``pNN`` / ``pNN.N``;
* metric alarms (``PutMetricAlarm``'s fields: statistic, period, evaluation periods,
  datapoints to alarm, threshold, comparison operator, treat-missing-data, actions per
  state), the states ``OK``/``ALARM``/``INSUFFICIENT_DATA``, AWS's ``StateReason`` wording
  and an alarm history (``DescribeAlarmHistory``);
* Auto Scaling actions are invoked again every period the alarm stays in the state, other
  actions only on a change ("Alarms invoke actions only when the alarm changes state. The
  exception is for alarms with Auto Scaling actions").

Memory is bounded: points are kept in buckets of ``resolution_seconds`` (default one
second, CloudWatch's high-resolution storage; shorter for sub-second periods) for
``retention_seconds`` (default 3 hours); a bucket keeps its exact sum, count, minimum and
maximum and up to ``samples_per_bucket`` values for percentiles (a uniform
reservoir beyond that). Running totals per series outlive the ring, for exposition.

AWS documentation followed: "Amazon CloudWatch concepts" (metrics, dimensions, statistics,
periods), "Using Amazon CloudWatch alarms" (evaluating an alarm, M out of N, configuring how
alarms treat missing data), the ``PutMetricAlarm`` and ``MetricAlarm`` API references.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import math
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
Dimensions = Mapping[str, str]
_SeriesKey = tuple[str, str, frozenset[tuple[str, str]]]
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_EPS = 1e-9
BASIC_STATISTICS = ("Average", "Sum", "SampleCount", "Minimum", "Maximum")


class CloudWatchError(ValueError):
    """A request CloudWatch would refuse (``InvalidParameterValue``); the message says why."""


def check_statistic(stat: str) -> None:
    """Refuse a statistic CloudWatch does not know, naming the ones it does."""
    if stat not in BASIC_STATISTICS and not _PERCENTILE.match(stat):
        raise CloudWatchError(f"unknown statistic {stat!r}: use one of "
                              f"{', '.join(BASIC_STATISTICS)} or a percentile such as p99")


class _Bucket:
    """One second of one series: exact aggregates, a bounded sample for percentiles."""

    __slots__ = ("count", "maximum", "minimum", "samples", "start", "total")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.samples: list[float] = []

    def add(self, value: float, cap: int, rng: random.Random) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if len(self.samples) < cap:
            self.samples.append(value)
        else:  # reservoir sampling: each value kept with equal probability
            j = rng.randrange(self.count)
            if j < cap:
                self.samples[j] = value


@dataclass
class SeriesInfo:
    """One series as an exposition sees it: its identity, latest value and running totals."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    unit: str
    latest: float
    latest_time: float
    sum: float
    count: int


class _Series:
    def __init__(self, namespace: str, name: str, dimensions: dict[str, str], unit: str) -> None:
        self.info = SeriesInfo(namespace, name, dimensions, unit, math.nan, 0.0, 0.0, 0)
        self.buckets: deque[_Bucket] = deque()


@dataclass(frozen=True)
class Datapoint:
    """One period's statistic (``GetMetricStatistics``' Datapoint)."""

    timestamp: float  # start of the period, epoch seconds
    value: float
    sample_count: int
    unit: str


class MetricStore:
    """Metrics by namespace, name and dimensions, with statistics per period, and alarms."""

    def __init__(self, *, retention_seconds: float = 3 * 3600.0, samples_per_bucket: int = 64,
                 resolution_seconds: float = 1.0, clock: Clock = time.time,
                 seed: int = 0) -> None:
        if retention_seconds <= 0 or samples_per_bucket < 1 or resolution_seconds <= 0:
            raise CloudWatchError("retention_seconds and resolution_seconds must be positive "
                                  "and samples_per_bucket at least 1")
        self.retention_seconds = retention_seconds
        self.resolution = resolution_seconds
        self.samples_per_bucket = samples_per_bucket
        self.clock = clock
        self._rng = random.Random(seed)
        self._series: dict[_SeriesKey, _Series] = {}
        self.alarms: dict[str, Alarm] = {}

    # -- metrics ---------------------------------------------------------------------------

    @staticmethod
    def _key(namespace: str, name: str, dimensions: Dimensions | None) -> _SeriesKey:
        return (namespace, name, frozenset((dimensions or {}).items()))

    def put(self, namespace: str, name: str, value: float, *,
            dimensions: Dimensions | None = None, unit: str = "None",
            timestamp: float | None = None) -> None:
        """Record one value (``PutMetricData`` with one MetricDatum)."""
        if not namespace or not name:
            raise CloudWatchError("a metric needs a namespace and a name")
        if not math.isfinite(value):
            raise CloudWatchError(f"{namespace} {name}: the value {value!r} is not a finite "
                                  "number (CloudWatch rejects NaN and Infinity)")
        now = self.clock()
        ts = now if timestamp is None else timestamp
        key = self._key(namespace, name, dimensions)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(namespace, name, dict(dimensions or {}), unit)
        second = math.floor(ts / self.resolution + _EPS) * self.resolution
        buckets = series.buckets
        if buckets and buckets[-1].start == second:
            bucket = buckets[-1]
        elif not buckets or buckets[-1].start < second:
            bucket = _Bucket(second)
            buckets.append(bucket)
        else:  # a late point: find or insert its bucket (rare; kept ordered)
            bucket = self._insert(buckets, second)
        bucket.add(value, self.samples_per_bucket, self._rng)
        info = series.info
        if ts >= info.latest_time:
            info.latest, info.latest_time = value, ts
        info.sum += value
        info.count += 1
        horizon = now - self.retention_seconds
        while buckets and buckets[0].start < horizon:
            buckets.popleft()

    @staticmethod
    def _insert(buckets: deque[_Bucket], second: float) -> _Bucket:
        for i, b in enumerate(buckets):
            if b.start == second:
                return b
            if b.start > second:
                new = _Bucket(second)
                buckets.insert(i, new)
                return new
        new = _Bucket(second)
        buckets.append(new)
        return new

    def statistics(self, namespace: str, name: str, dimensions: Dimensions | None = None, *,
                   period: float, start: float, end: float, stat: str = "Average"
                   ) -> list[Datapoint]:
        """The statistic per period in [start, end), oldest first; periods without data are
        left out, as ``GetMetricStatistics`` does. Periods start at ``start`` + k*period."""
        check_statistic(stat)
        if period < self.resolution - _EPS:
            raise CloudWatchError(
                f"the period ({period} s) is shorter than the store's resolution "
                f"({self.resolution} s); create the MetricStore with resolution_seconds at "
                "most the shortest period")
        if end <= start:
            return []
        series = self._series.get(self._key(namespace, name, dimensions))
        if series is None:
            return []
        grouped: dict[int, list[_Bucket]] = {}
        for b in series.buckets:
            if start - _EPS <= b.start < end - _EPS:
                grouped.setdefault(int((b.start - start) / period + _EPS), []).append(b)
        unit = series.info.unit
        return [Datapoint(start + k * period, _aggregate(bs, stat), sum(b.count for b in bs), unit)
                for k, bs in sorted(grouped.items())]

    def series(self) -> list[SeriesInfo]:
        """Every series' identity, latest value and running sum/count (for ``/metrics``)."""
        return [s.info for s in self._series.values()]

    # -- alarms ----------------------------------------------------------------------------

    def put_metric_alarm(self, alarm: Alarm) -> Alarm:
        """Create or replace an alarm (``PutMetricAlarm``); a new alarm starts in
        INSUFFICIENT_DATA, as in CloudWatch."""
        self.alarms[alarm.name] = alarm
        return alarm

    def delete_alarms(self, names: Iterable[str]) -> None:
        for name in names:
            self.alarms.pop(name, None)

    def describe_alarms(self) -> list[dict[str, object]]:
        return [a.describe() for a in self.alarms.values()]

    async def evaluate_alarms(self, now: float | None = None) -> None:
        """Evaluate every alarm once and run the actions its state calls for."""
        at = self.clock() if now is None else now
        for alarm in list(self.alarms.values()):
            await alarm.evaluate_and_act(self, at)

    async def run_alarms(self, interval: float | None = None) -> None:
        """Evaluate the alarms forever: every ``interval`` seconds, or every shortest alarm
        period when None (CloudWatch evaluates each alarm once per period)."""
        while True:
            step = interval or min((a.period for a in self.alarms.values()), default=1.0)
            await asyncio.sleep(step)
            try:
                await self.evaluate_alarms()
            except Exception:  # one failing action must not stop the evaluator
                log.exception("cloudwatch.alarm_evaluation_failed")


def _aggregate(buckets: list[_Bucket], stat: str) -> float:
    count = sum(b.count for b in buckets)
    if stat == "SampleCount":
        return float(count)
    if stat == "Sum":
        return sum(b.total for b in buckets)
    if stat == "Average":
        return sum(b.total for b in buckets) / count
    if stat == "Minimum":
        return min(b.minimum for b in buckets)
    if stat == "Maximum":
        return max(b.maximum for b in buckets)
    q = float(stat[1:]) / 100.0
    values = sorted(v for b in buckets for v in b.samples)
    # linear interpolation between closest ranks
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


# -- alarms --------------------------------------------------------------------------------


class AlarmState(enum.StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class ComparisonOperator(enum.StrEnum):
    GREATER_THAN_OR_EQUAL_TO_THRESHOLD = "GreaterThanOrEqualToThreshold"
    GREATER_THAN_THRESHOLD = "GreaterThanThreshold"
    LESS_THAN_THRESHOLD = "LessThanThreshold"
    LESS_THAN_OR_EQUAL_TO_THRESHOLD = "LessThanOrEqualToThreshold"

    def breaches(self, value: float, threshold: float) -> bool:
        return {
            "GreaterThanOrEqualToThreshold": value >= threshold,
            "GreaterThanThreshold": value > threshold,
            "LessThanThreshold": value < threshold,
            "LessThanOrEqualToThreshold": value <= threshold,
        }[self.value]

    @property
    def words(self) -> str:
        """How StateReason says it ("were greater than the threshold")."""
        return {
            "GreaterThanOrEqualToThreshold": "greater than or equal to",
            "GreaterThanThreshold": "greater than",
            "LessThanThreshold": "less than",
            "LessThanOrEqualToThreshold": "less than or equal to",
        }[self.value]


TreatMissingData = str  # "missing" | "ignore" | "breaching" | "notBreaching"
_TREAT_MISSING = ("missing", "ignore", "breaching", "notBreaching")


@dataclass
class AlarmAction:
    """What an alarm does in a state: a coroutine function, and whether it repeats every
    period while the alarm stays in that state (Auto Scaling actions do)."""

    name: str
    run: Callable[[Alarm], Awaitable[None] | None]
    repeats: bool = False


@dataclass
class AlarmHistoryItem:
    """One state change (``DescribeAlarmHistory``'s StateUpdate item)."""

    timestamp: float
    old_state: AlarmState
    new_state: AlarmState
    summary: str  # "Alarm updated from OK to ALARM"
    reason: str


def _fmt_point_time(ts: float) -> str:
    # StateReason prints datapoints as dd/mm/yy HH:MM:SS (UTC)
    return datetime.fromtimestamp(ts, UTC).strftime("%d/%m/%y %H:%M:%S")


def _fmt_value(v: float) -> str:
    return repr(float(v))


@dataclass
class Alarm:
    """A metric alarm (``PutMetricAlarm``): a threshold over the last ``evaluation_periods``
    periods of one metric's statistic; ``datapoints_to_alarm`` of them breaching set ALARM."""

    name: str
    namespace: str
    metric_name: str
    threshold: float
    comparison_operator: ComparisonOperator | str
    dimensions: dict[str, str] = field(default_factory=dict)
    statistic: str = "Average"
    period: float = 60.0
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None  # None: equal to evaluation_periods
    treat_missing_data: TreatMissingData = "missing"
    alarm_actions: list[AlarmAction] = field(default_factory=list)
    ok_actions: list[AlarmAction] = field(default_factory=list)
    insufficient_data_actions: list[AlarmAction] = field(default_factory=list)
    description: str = ""
    state: AlarmState = AlarmState.INSUFFICIENT_DATA
    state_reason: str = "Unchecked: Initial alarm creation"
    state_updated: float = 0.0
    history: list[AlarmHistoryItem] = field(default_factory=list)
    last_datapoints: list[Datapoint | None] = field(default_factory=list)
    history_limit: int = 100

    def __post_init__(self) -> None:
        self.comparison_operator = ComparisonOperator(self.comparison_operator)
        check_statistic(self.statistic)
        if self.period <= 0:
            raise CloudWatchError(f"alarm {self.name}: the period must be positive")
        if self.evaluation_periods < 1:
            raise CloudWatchError(f"alarm {self.name}: evaluation_periods must be at least 1")
        m = self.evaluation_periods if self.datapoints_to_alarm is None else \
            self.datapoints_to_alarm
        if not 1 <= m <= self.evaluation_periods:
            raise CloudWatchError(
                f"alarm {self.name}: datapoints_to_alarm ({m}) must be between 1 and "
                f"evaluation_periods ({self.evaluation_periods})")
        self.datapoints_to_alarm = m
        if self.treat_missing_data not in _TREAT_MISSING:
            raise CloudWatchError(f"alarm {self.name}: treat_missing_data must be one of "
                                  f"{', '.join(_TREAT_MISSING)}")

    @property
    def operator(self) -> ComparisonOperator:
        return ComparisonOperator(self.comparison_operator)

    def breaching(self, value: float) -> bool:
        return self.operator.breaches(value, self.threshold)

    def datapoints(self, store: MetricStore, now: float) -> list[Datapoint | None]:
        """The last ``evaluation_periods`` complete periods, oldest first, None where the
        period had no data. Periods are aligned on multiples of the period."""
        end = math.floor(now / self.period) * self.period
        start = end - self.evaluation_periods * self.period
        found = {round((d.timestamp - start) / self.period): d
                 for d in store.statistics(self.namespace, self.metric_name, self.dimensions,
                                           period=self.period, start=start, end=end,
                                           stat=self.statistic)}
        return [found.get(k) for k in range(self.evaluation_periods)]

    def evaluate(self, store: MetricStore, now: float) -> bool:
        """Compute the state from the metric; True when it changed."""
        points = self.datapoints(store, now)
        self.last_datapoints = points
        new_state, reason = self._decide(points)
        if new_state is None or new_state == self.state:
            return False
        self.set_state(new_state, reason, now)
        return True

    def _decide(self, points: list[Datapoint | None]) -> tuple[AlarmState | None, str]:
        m = self.datapoints_to_alarm or self.evaluation_periods
        present = [p for p in reversed(points) if p is not None]  # newest first
        missing = len(points) - len(present)
        breaching = [p for p in present if self.breaching(p.value)]
        n_breaching = len(breaching)
        if self.treat_missing_data == "breaching":
            n_breaching += missing
        if not present:
            if self.treat_missing_data == "ignore":
                return None, ""
            if self.treat_missing_data == "missing":
                word = "datapoint was" if len(points) == 1 else "datapoints were"
                return (AlarmState.INSUFFICIENT_DATA,
                        f"Insufficient Data: {len(points)} {word} unknown.")
        if n_breaching >= m:
            shown = breaching if breaching else []
            return AlarmState.ALARM, self._reason(shown, n_breaching, len(points), m, True)
        steady = [p for p in present if not self.breaching(p.value)]
        if steady:
            return AlarmState.OK, self._reason(steady, len(steady), len(points), m, False)
        # Every datapoint received breaches, but too few periods had data to alarm.
        return AlarmState.OK, self._reason(breaching, len(breaching), len(points), m, True)

    def _reason(self, shown: list[Datapoint], n: int, total: int, m: int, alarm: bool) -> str:
        listing = ", ".join(f"{_fmt_value(p.value)} ({_fmt_point_time(p.timestamp)})"
                            for p in shown)
        verb = "was" if n == 1 else "were"
        noun = "datapoint" if n == 1 else "datapoints"
        negation = "" if alarm else "not "
        # Every datapoint of the window named: "3 datapoints [...] were"; some of them: "1
        # out of the last 3 datapoints [...] was", and the minimum the transition needed.
        whole = (total == m) if alarm else (n == total)
        if whole:
            head = f"Threshold Crossed: {n} {noun} [{listing}] {verb} {negation}"
        else:
            head = (f"Threshold Crossed: {n} out of the last {total} datapoints [{listing}] "
                    f"{verb} {negation}")
        text = f"{head}{self.operator.words} the threshold ({_fmt_value(self.threshold)})"
        if alarm and total != m:
            text += f" (minimum {m} datapoints for OK -> ALARM transition)"
        elif not whole:
            text += " (minimum 1 datapoint for ALARM -> OK transition)"
        return text + "."

    def set_state(self, state: AlarmState, reason: str, now: float) -> None:
        """Set the state (as ``SetAlarmState`` or an evaluation does) and record it."""
        old = self.state
        self.state, self.state_reason, self.state_updated = state, reason, now
        self.history.insert(0, AlarmHistoryItem(now, old, state,
                                                f"Alarm updated from {old} to {state}", reason))
        del self.history[self.history_limit:]
        log.info("cloudwatch.alarm_state", alarm=self.name, old=str(old), new=str(state),
                 reason=reason)

    def actions_for(self, state: AlarmState) -> list[AlarmAction]:
        return {AlarmState.ALARM: self.alarm_actions, AlarmState.OK: self.ok_actions,
                AlarmState.INSUFFICIENT_DATA: self.insufficient_data_actions}[state]

    async def evaluate_and_act(self, store: MetricStore, now: float) -> None:
        changed = self.evaluate(store, now)
        for action in list(self.actions_for(self.state)):
            if changed or action.repeats:
                result = action.run(self)
                if inspect.isawaitable(result):
                    await result

    def latest_value(self) -> float | None:
        """The newest datapoint of the last evaluation (what a step policy measures)."""
        for p in reversed(self.last_datapoints):
            if p is not None:
                return p.value
        return None

    def describe(self) -> dict[str, object]:
        return {
            "AlarmName": self.name, "AlarmDescription": self.description,
            "Namespace": self.namespace, "MetricName": self.metric_name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions.items()],
            "Statistic": self.statistic, "Period": self.period,
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm, "Threshold": self.threshold,
            "ComparisonOperator": str(self.comparison_operator),
            "TreatMissingData": self.treat_missing_data,
            "StateValue": str(self.state), "StateReason": self.state_reason,
            "StateUpdatedTimestamp": _iso(self.state_updated),
            "AlarmActions": [a.name for a in self.alarm_actions],
            "OKActions": [a.name for a in self.ok_actions],
            "InsufficientDataActions": [a.name for a in self.insufficient_data_actions],
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.asynccontextmanager
async def alarm_evaluator(store: MetricStore, interval: float | None = None
                          ) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``store.run_alarms`` for the block's duration."""
    task = asyncio.create_task(store.run_alarms(interval), name="cloudwatch-alarms")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
