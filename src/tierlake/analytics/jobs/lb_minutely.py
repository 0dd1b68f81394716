"""``lb_minutely``: each load balancer's traffic per target group and UTC minute.

From the load balancers' access logs (``raw/lb/access_logs``, ALB's fields), by the line's
``time`` (when the response was sent). The figures of ALB's CloudWatch metrics
(``RequestCount``, ``HTTPCode_ELB_4XX_Count``, ``HTTPCode_Target_5XX_Count``,
``TargetResponseTime``, ``ProcessedBytes``), recomputed from the logs as one would with
Athena. One row per load balancer, target group and minute with any request (key
``load_balancer, target_group, day, hour, minute``):

* ``load_balancer`` (string): the name in ``elb`` (``app/<name>/<id>``).
* ``target_group`` (string): the name in ``target_group_arn``; ``-`` for requests no target
  group was chosen for.
* ``day`` (date), ``hour`` (int64, 0-23), ``minute`` (int64, 0-59): UTC.
* ``requests`` (int64): lines, i.e. requests (also those the balancer answered itself).
* ``elb_4xx``, ``elb_5xx`` (int64): 4xx / 5xx answers the balancer generated itself (an
  ``elb_status_code`` in that class and no ``target_status_code``, as CloudWatch's
  ``HTTPCode_ELB_*`` count them: no healthy target, a target that could not be reached...).
* ``target_4xx``, ``target_5xx`` (int64): 4xx / 5xx answers of the targets.
* ``target_p50_ms``, ``target_p90_ms``, ``target_p99_ms`` (int64): percentiles of
  ``target_processing_time`` in milliseconds over the requests a target answered (ALB's -1,
  null in the lake, left out); null when none was.
* ``total_p50_ms``, ``total_p90_ms``, ``total_p99_ms`` (int64): the same of the whole time in
  the balancer (``request_`` + ``target_`` + ``response_processing_time``).
* ``received_bytes``, ``sent_bytes`` (int64): sums.

Percentiles are nearest-rank (the smallest value with at least p% of the values at or below
it) over whole milliseconds (ALB logs times to the millisecond), so every engine gives the
same numbers (an interpolating ``quantile`` differs between engines).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Job, Tables

KEY = ("load_balancer", "target_group", "day", "hour", "minute")
PERCENTILES = (50, 90, 99)


def _ms(seconds: ir.FloatingValue) -> ir.IntegerValue:
    return (seconds * 1000).round().cast("int64")


def _in_class(code: ir.IntegerValue, hundreds: int) -> ir.BooleanValue:
    return (code >= hundreds * 100) & (code < hundreds * 100 + 100)


def build(t: Tables) -> ir.Table:
    logs = t["lb_access_logs"].mutate(
        load_balancer=_.load_balancer.fill_null("-"),
        target_group=_.target_group.fill_null("-"),
        day=_.time.date(),
        hour=_.time.hour().cast("int64"),
        minute=_.time.minute().cast("int64"),
        target_ms=_ms(_.target_processing_time),
        total_ms=_ms(_.request_processing_time + _.target_processing_time
                     + _.response_processing_time),
    )
    ranked = logs.mutate(**{
        f"{m}_rank": ibis.row_number().over(ibis.window(
            group_by=list(KEY), order_by=[logs[m].isnull(), logs[m]])) + 1
        for m in ("target_ms", "total_ms")
    }, **{
        f"{m}_n": logs[m].count().over(ibis.window(group_by=list(KEY)))
        for m in ("target_ms", "total_ms")
    })

    def count(condition: ir.BooleanValue) -> ir.IntegerValue:
        return condition.ifelse(1, 0).sum().cast("int64")

    def percentile(metric: str, p: int) -> ir.IntegerValue:
        rank, n = ranked[f"{metric}_ms_rank"], ranked[f"{metric}_ms_n"]
        return ranked[f"{metric}_ms"].min(where=rank * 100 >= n * p).cast("int64")

    elb_only = ranked.target_status_code.isnull()
    return ranked.group_by(list(KEY)).agg(
        requests=_.type.count().cast("int64"),
        elb_4xx=count(_in_class(ranked.elb_status_code, 4) & elb_only),
        elb_5xx=count(_in_class(ranked.elb_status_code, 5) & elb_only),
        target_4xx=count(_in_class(ranked.target_status_code, 4)),
        target_5xx=count(_in_class(ranked.target_status_code, 5)),
        **{f"target_p{p}_ms": percentile("target", p) for p in PERCENTILES},
        **{f"total_p{p}_ms": percentile("total", p) for p in PERCENTILES},
        received_bytes=_.received_bytes.sum().cast("int64"),
        sent_bytes=_.sent_bytes.sum().cast("int64"),
    )


JOB = Job(
    name="lb_minutely",
    inputs=("lb_access_logs",),
    description="Requests, error codes, latency percentiles and bytes per load balancer, "
                "target group and UTC minute, from the access logs.",
    build=build,
    order_by=KEY,
)
