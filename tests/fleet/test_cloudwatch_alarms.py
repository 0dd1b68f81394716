"""CloudWatch metrics and alarms on an injected clock: statistics per period, the alarm state
machine (M out of N, treat-missing-data), AWS's StateReason wording and action rules."""

from __future__ import annotations

import pytest

from tierlake.ops.cloudwatch import (
    Alarm,
    AlarmAction,
    AlarmState,
    CloudWatchError,
    MetricStore,
)

pytestmark = pytest.mark.anyio
T0 = 1_796_112_000.0  # 2026-12-01T08:00:00Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _store(clock: Clock) -> MetricStore:
    return MetricStore(clock=clock)


def test_statistics_per_period() -> None:
    clock = Clock()
    store = _store(clock)
    for i, v in enumerate([10.0, 20.0, 30.0, 40.0]):
        store.put("AWS/EC2", "CPUUtilization", v, dimensions={"InstanceId": "i-1"},
                  unit="Percent", timestamp=T0 + i * 30)
    clock.t = T0 + 120
    dims = {"InstanceId": "i-1"}
    avg = store.statistics("AWS/EC2", "CPUUtilization", dims, period=60, start=T0,
                           end=T0 + 120, stat="Average")
    assert [(d.timestamp, d.value, d.sample_count) for d in avg] == [(T0, 15.0, 2),
                                                                    (T0 + 60, 35.0, 2)]
    total = store.statistics("AWS/EC2", "CPUUtilization", dims, period=120, start=T0,
                             end=T0 + 120, stat="Sum")
    assert total[0].value == 100.0
    assert store.statistics("AWS/EC2", "CPUUtilization", dims, period=120, start=T0,
                            end=T0 + 120, stat="Maximum")[0].value == 40.0
    assert store.statistics("AWS/EC2", "CPUUtilization", dims, period=120, start=T0,
                            end=T0 + 120, stat="p50")[0].value == 25.0
    # another dimension set is another series
    assert store.statistics("AWS/EC2", "CPUUtilization", {"InstanceId": "i-2"}, period=60,
                            start=T0, end=T0 + 120) == []
    with pytest.raises(CloudWatchError, match="unknown statistic 'Median'"):
        store.statistics("AWS/EC2", "CPUUtilization", dims, period=60, start=T0, end=T0 + 60,
                         stat="Median")


def test_memory_is_bounded_and_running_totals_stay() -> None:
    clock = Clock()
    store = MetricStore(retention_seconds=60, samples_per_bucket=8, clock=clock)
    for i in range(600):
        clock.t = T0 + i * 0.5
        store.put("AWS/ApplicationELB", "RequestCount", 1.0, dimensions={"LoadBalancer": "a"},
                  unit="Count")
    (info,) = store.series()
    assert (info.count, info.sum, info.latest, info.unit) == (600, 600.0, 1.0, "Count")
    # only the last minute is kept: 120 points in 60 one-second buckets
    kept = store.statistics("AWS/ApplicationELB", "RequestCount", {"LoadBalancer": "a"},
                            period=1000, start=T0, end=T0 + 1000, stat="Sum")
    assert kept[0].value <= 122
    with pytest.raises(CloudWatchError, match="not a finite number"):
        store.put("AWS/EC2", "CPUUtilization", float("nan"))


def _cpu_alarm(**kw: object) -> Alarm:
    args: dict[str, object] = dict(
        name="cpu-high", namespace="AWS/EC2", metric_name="CPUUtilization",
        dimensions={"AutoScalingGroupName": "app"}, threshold=50.0,
        comparison_operator="GreaterThanThreshold", statistic="Average", period=60,
        evaluation_periods=3)
    args.update(kw)
    return Alarm(**args)  # type: ignore[arg-type]


def _put(store: MetricStore, value: float, at: float) -> None:
    store.put("AWS/EC2", "CPUUtilization", value, dimensions={"AutoScalingGroupName": "app"},
              unit="Percent", timestamp=at)


def test_alarm_states_and_reason_wording() -> None:
    clock = Clock()
    store = _store(clock)
    alarm = store.put_metric_alarm(_cpu_alarm())
    assert alarm.state == AlarmState.INSUFFICIENT_DATA
    assert alarm.evaluate(store, T0 + 180) is False  # still no data
    assert alarm.state_reason == "Unchecked: Initial alarm creation"
    for k, v in enumerate([61.0, 70.0, 55.5]):
        _put(store, v, T0 + k * 60 + 1)
    assert alarm.evaluate(store, T0 + 180)
    assert alarm.state == AlarmState.ALARM
    assert alarm.state_reason == (
        "Threshold Crossed: 3 datapoints [55.5 (01/12/26 08:02:00), 70.0 (01/12/26 08:01:00), "
        "61.0 (01/12/26 08:00:00)] were greater than the threshold (50.0).")
    _put(store, 10.0, T0 + 181)
    assert alarm.evaluate(store, T0 + 240)
    assert alarm.state == AlarmState.OK
    assert alarm.state_reason == (
        "Threshold Crossed: 1 out of the last 3 datapoints [10.0 (01/12/26 08:03:00)] was not "
        "greater than the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition).")
    assert [h.summary for h in alarm.history] == [
        "Alarm updated from ALARM to OK", "Alarm updated from INSUFFICIENT_DATA to ALARM"]
    # no data at all for three periods: INSUFFICIENT_DATA (treat missing data as missing)
    assert alarm.evaluate(store, T0 + 600)
    assert alarm.state == AlarmState.INSUFFICIENT_DATA
    assert alarm.state_reason == "Insufficient Data: 3 datapoints were unknown."


def test_m_out_of_n() -> None:
    store = _store(Clock())
    alarm = _cpu_alarm(evaluation_periods=3, datapoints_to_alarm=2)
    for k, v in enumerate([61.0, 10.0, 70.0]):
        _put(store, v, T0 + k * 60)
    alarm.evaluate(store, T0 + 180)
    assert alarm.state == AlarmState.ALARM
    assert alarm.state_reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [70.0 (01/12/26 08:02:00), "
        "61.0 (01/12/26 08:00:00)] were greater than the threshold (50.0) "
        "(minimum 2 datapoints for OK -> ALARM transition).")
    one = _cpu_alarm(evaluation_periods=3, datapoints_to_alarm=2)
    _put(store, 1.0, T0 + 180)
    _put(store, 1.0, T0 + 240)
    one.evaluate(store, T0 + 300)  # 70, 1, 1: one of three
    assert one.state == AlarmState.OK
    with pytest.raises(CloudWatchError, match="datapoints_to_alarm"):
        _cpu_alarm(evaluation_periods=2, datapoints_to_alarm=3)


@pytest.mark.parametrize(("treat", "expected"), [
    ("missing", AlarmState.OK),  # the one present datapoint is not enough
    ("breaching", AlarmState.ALARM),  # the two missing ones count as breaching
    ("notBreaching", AlarmState.OK),
    ("ignore", AlarmState.OK),
])
def test_treat_missing_data_with_some_data(treat: str, expected: AlarmState) -> None:
    store = _store(Clock())
    # one breaching point in three periods, two datapoints needed
    _put(store, 90.0, T0 + 120)
    alarm = _cpu_alarm(treat_missing_data=treat, datapoints_to_alarm=2)
    alarm.evaluate(store, T0 + 180)
    assert alarm.state == expected
    one = _cpu_alarm(treat_missing_data=treat, datapoints_to_alarm=1)
    one.evaluate(store, T0 + 180)
    assert one.state == AlarmState.ALARM
    assert one.state_reason.startswith(
        "Threshold Crossed: 1 out of the last 3 datapoints [90.0 (01/12/26 08:02:00)] was "
        "greater than the threshold (50.0)") or treat == "breaching"


@pytest.mark.parametrize(("treat", "expected"), [
    ("missing", AlarmState.INSUFFICIENT_DATA),
    ("breaching", AlarmState.ALARM),
    ("notBreaching", AlarmState.OK),
])
def test_treat_missing_data_without_data(treat: str, expected: AlarmState) -> None:
    store = _store(Clock())
    alarm = _cpu_alarm(treat_missing_data=treat)
    alarm.set_state(AlarmState.OK, "set by the test", T0)
    alarm.evaluate(store, T0 + 180)
    assert alarm.state == expected


def test_ignore_keeps_the_state_without_data() -> None:
    store = _store(Clock())
    alarm = _cpu_alarm(treat_missing_data="ignore")
    alarm.set_state(AlarmState.ALARM, "set by the test", T0)
    assert alarm.evaluate(store, T0 + 180) is False
    assert alarm.state == AlarmState.ALARM


async def test_actions_on_change_and_auto_scaling_actions_every_period() -> None:
    clock = Clock()
    store = _store(clock)
    calls: list[str] = []
    alarm = store.put_metric_alarm(_cpu_alarm(evaluation_periods=1, alarm_actions=[
        AlarmAction("sns", lambda a: calls.append("sns")),
        AlarmAction("policy", lambda a: calls.append("policy"), repeats=True)],
        ok_actions=[AlarmAction("ok", lambda a: calls.append("ok"))]))
    for k in range(3):
        _put(store, 90.0, T0 + k * 60)
        await store.evaluate_alarms(T0 + (k + 1) * 60)
    assert alarm.state == AlarmState.ALARM
    assert calls == ["sns", "policy", "policy", "policy"]
    _put(store, 1.0, T0 + 180)
    await store.evaluate_alarms(T0 + 240)
    assert calls[-1] == "ok"
