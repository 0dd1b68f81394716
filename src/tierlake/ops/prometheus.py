"""Prometheus exposition of the control plane's CloudWatch series and states.

Why these names: people who scrape real AWS use Prometheus' own CloudWatch exporter
(https://github.com/prometheus/cloudwatch_exporter), whose names are
``aws_<namespace>_<metric>_<statistic>`` in snake case, with each dimension a snake-case
label. tierlake keeps that scheme, so dashboards and alerts carry over:

==========================================  ===============================================
CloudWatch                                   Prometheus
==========================================  ===============================================
namespace ``AWS/ApplicationELB``             prefix ``aws_applicationelb_``
metric ``RequestCount``                      a summary: ``aws_applicationelb_request_count_sum``
                                             (running sum of its datapoints) and
                                             ``aws_applicationelb_request_count_count``
                                             (their number)
latest datapoint                             ``aws_applicationelb_request_count_last`` (gauge)
dimension ``LoadBalancer``, ``TargetGroup``  labels ``load_balancer``, ``target_group``
==========================================  ===============================================

So ``rate(aws_applicationelb_request_count_sum[1m])`` is requests per second,
``rate(..._sum[5m]) / rate(..._count[5m])`` the mean of a metric such as ``TargetResponseTime``, and
``_last`` what an operator compares with an alarm's threshold. A family's label set is the
union of its series' dimensions (a series without one has it empty, which Prometheus reads
as absent): ``RequestCount`` per load balancer and per load balancer and target group share
one family. The unit is in the family's HELP text (CloudWatch units are not Prometheus
base units, so no suffix is invented).

States are state sets, one sample per possible state, 1 for the current one (the
kube-state-metrics pattern, so ``sum by (state)`` counts): ``tierlake_target_state``,
``tierlake_alarm_state``, ``tierlake_instance_state``, ``tierlake_instance_health_status``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricSeries(Protocol):
    """One CloudWatch series as the metric store keeps it (namespace, name, dimensions)."""

    @property
    def namespace(self) -> str: ...  # "AWS/ApplicationELB"

    @property
    def name(self) -> str: ...  # "RequestCount"

    @property
    def dimensions(self) -> Mapping[str, str]: ...  # {"LoadBalancer": "web"}

    @property
    def unit(self) -> str: ...  # "Count", "Seconds", "Percent" ...

    @property
    def latest(self) -> float | None: ...  # the newest datapoint; None before the first

    @property
    def sum(self) -> float: ...  # running sum of every datapoint put

    @property
    def count(self) -> int: ...  # number of datapoints put


@dataclass(frozen=True)
class Series:
    """A plain :class:`MetricSeries` (for tests, and for sources without a metric store)."""

    namespace: str
    name: str
    dimensions: Mapping[str, str]
    unit: str
    latest: float | None
    sum: float
    count: int


_CAMEL_1 = re.compile(r"([a-z])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z0-9]+)([A-Z][a-z])")
_INVALID = re.compile(r"[^a-zA-Z0-9_]+")


def snake_case(name: str) -> str:
    """``HTTPCode_Target_5XX_Count`` -> ``http_code_target_5xx_count``, as the exporter."""
    name = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return re.sub(r"_+", "_", _INVALID.sub("_", name)).strip("_").lower()


def family_name(namespace: str, metric: str) -> str:
    """``AWS/ApplicationELB``, ``RequestCount`` -> ``aws_applicationelb_request_count``."""
    prefix = re.sub(r"_+", "_", _INVALID.sub("_", namespace)).strip("_").lower()
    name = f"{prefix}_{snake_case(metric)}"
    return name if not name[0].isdigit() else f"_{name}"


def cloudwatch_families(series: Iterable[MetricSeries]) -> list[Metric]:
    """Two families per CloudWatch metric: a summary (``_sum``, ``_count``: every datapoint
    put, as observations) and the ``_last`` gauge, labelled by the union of the dimensions
    its series carry."""
    by_metric: dict[tuple[str, str], list[MetricSeries]] = defaultdict(list)
    for one in series:
        by_metric[(one.namespace, one.name)].append(one)
    families: list[Metric] = []
    for (namespace, metric), members in sorted(by_metric.items()):
        base = family_name(namespace, metric)
        dims = sorted({d for m in members for d in m.dimensions})
        labels = [snake_case(d) for d in dims]
        unit = members[0].unit
        about = f"CloudWatch {namespace} {metric} ({unit})"
        observed = SummaryMetricFamily(base, f"{about}: datapoints put", labels=labels)
        last = GaugeMetricFamily(f"{base}_last", f"{about}: latest datapoint", labels=labels)
        for member in members:
            values = [member.dimensions.get(d, "") for d in dims]
            observed.add_metric(values, count_value=member.count, sum_value=member.sum)
            if member.latest is not None:
                last.add_metric(values, member.latest)
        families += [observed, last]
    return families


def state_set_family(name: str, documentation: str, labels: Sequence[str],
                     states: Sequence[str],
                     rows: Iterable[tuple[Sequence[str], str]]) -> GaugeMetricFamily:
    """A gauge with one sample per (row, possible state): 1 for the row's state, else 0.

    ``rows`` are (label values, current state); the state label is ``state``.
    """
    family = GaugeMetricFamily(name, documentation, labels=[*labels, "state"])
    for values, current in rows:
        for state in states if current in states else [*states, current]:
            family.add_metric([*values, state], 1.0 if state == current else 0.0)
    return family


class _Collector:
    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


def render(families: Callable[[], Iterable[Metric]]) -> bytes:
    """The text exposition of ``families()``, collected now (a registry of its own, so the
    process-wide default registry's metrics do not leak in)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    return generate_latest(registry)
