"""``cohort_retention``: monthly cohorts by first order month, and how many come back.

One row per cohort and month with any active customer (key ``cohort_month,
months_since_first``); months where nobody of the cohort ordered have no row:

* ``cohort_month`` (date): the first day of the UTC month of the customer's first order.
* ``months_since_first`` (int64): calendar months from ``cohort_month`` (0 = the first).
* ``cohort_size`` (int64): customers whose first order is in ``cohort_month``.
* ``active_customers`` (int64): of those, customers with an order in that month.
* ``retention_rate`` (float64): ``active_customers / cohort_size`` rounded half up to 4
  decimals (1.0 at month 0).

Cancelled orders are left out (a customer whose only orders were cancelled is in no cohort).
"""

from __future__ import annotations

import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import ratio
from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    orders = t["orders"].filter(_.status != "cancelled")
    months = orders.select(
        customer_id=_.customer_id,
        month_index=_.placed_at.year().cast("int64") * 12 + _.placed_at.month().cast("int64"),
        month=_.placed_at.date().truncate("M"),
    ).distinct()
    firsts = months.group_by("customer_id").agg(
        first_index=_.month_index.min(), cohort_month=_.month.min()
    )
    sizes = firsts.group_by("cohort_month").agg(cohort_size=_.customer_id.count().cast("int64"))
    activity = months.join(firsts, "customer_id").group_by(
        "cohort_month", months_since_first=(_.month_index - _.first_index).cast("int64")
    ).agg(active_customers=_.customer_id.nunique().cast("int64"))
    return activity.join(sizes, "cohort_month").select(
        "cohort_month", "months_since_first", "cohort_size", "active_customers",
        retention_rate=ratio(_.active_customers, _.cohort_size),
    )


JOB = Job(
    name="cohort_retention",
    inputs=("orders",),
    description="Monthly cohorts by first order: size, active customers, retention rate.",
    build=build,
    order_by=("cohort_month", "months_since_first"),
)
