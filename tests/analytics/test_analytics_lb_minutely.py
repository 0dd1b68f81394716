"""``lb_minutely`` on every engine equals the figures computed here, line by line, in Python
from the access-log lines the real writer wrote and the real source loaded."""

from __future__ import annotations

import math
from collections import defaultdict

import pyarrow.parquet as pq
from analytics_lake import Lake

KEY = ("load_balancer", "target_group", "day", "hour", "minute")


def nearest_rank(values: list[int], p: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1]


def expected(lake: Lake) -> dict[tuple, dict]:
    rows = pq.ParquetDataset(lake.files["lb_access_logs"]).read().to_pylist()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        t = r["time"]
        groups[(r["load_balancer"], r["target_group"] or "-", t.date(), t.hour,
                 t.minute)].append(r)
    out = {}
    for key, lines in groups.items():
        dispatched = [r for r in lines if r["target_processing_time"] is not None]
        target = [round(r["target_processing_time"] * 1000) for r in dispatched]
        total = [round((r["request_processing_time"] + r["target_processing_time"]
                        + r["response_processing_time"]) * 1000) for r in dispatched]

        def n(pred, lines: list[dict] = lines) -> int:  # type: ignore[no-untyped-def]
            return sum(1 for r in lines if pred(r))

        out[key] = {
            "requests": len(lines),
            "elb_4xx": n(lambda r: r["target_status_code"] is None
                         and 400 <= r["elb_status_code"] < 500),
            "elb_5xx": n(lambda r: r["target_status_code"] is None
                         and 500 <= r["elb_status_code"] < 600),
            "target_4xx": n(lambda r: r["target_status_code"] is not None
                            and 400 <= r["target_status_code"] < 500),
            "target_5xx": n(lambda r: r["target_status_code"] is not None
                            and 500 <= r["target_status_code"] < 600),
            **{f"target_p{p}_ms": nearest_rank(target, p) for p in (50, 90, 99)},
            **{f"total_p{p}_ms": nearest_rank(total, p) for p in (50, 90, 99)},
            "received_bytes": sum(r["received_bytes"] for r in lines),
            "sent_bytes": sum(r["sent_bytes"] for r in lines),
        }
    return out


def test_lb_minutely_equals_the_figures_from_the_lines(curated, lake: Lake) -> None:
    table = curated["lb_minutely"]
    got = {tuple(r[k] for k in KEY): {c: v for c, v in r.items() if c not in KEY}
           for r in table.to_pylist()}
    want = expected(lake)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    # the data exercise what the job distinguishes, or this test would prove little
    assert sum(v["elb_5xx"] for v in want.values()) > 0
    assert sum(v["target_4xx"] for v in want.values()) > 0
    assert sum(v["target_5xx"] for v in want.values()) > 0
    assert any(k[1] == "-" for k in want)
    assert {k[0] for k in want} == {"web-alb", "app-alb"}
    assert any(v["target_p50_ms"] != v["target_p99_ms"] for v in want.values())
    assert all(v["target_p50_ms"] is None for k, v in want.items() if k[1] == "-")
