"""``customer_segments``: RFM scores and segments of the customers who ordered.

One row per customer with at least one order that was not cancelled (key ``customer_id``):

* ``customer_id`` (int64), ``country`` (string).
* ``first_order_day``, ``last_order_day`` (date, UTC).
* ``recency_days`` (int64): UTC calendar days from ``last_order_day`` to the date of the
  latest order in the data (any customer, any status), so a run is reproducible.
* ``frequency`` (int64): orders; ``monetary_cents`` (int64): sum of their ``total_cents``
  (goods and shipping: what the customer paid).
* ``r_score``, ``f_score``, ``m_score`` (int64, 1..5): quintiles over all these customers,
  5 = best (most recent, most orders, most money). Rank based: ``1 + 5 * rank // n`` with
  ``rank`` the 0-based rank from worst to best, so ties share a score.
* ``rfm`` (string): the three scores, e.g. ``"545"``.
* ``segment`` (string), from ``r_score`` (R) and ``f_score`` (F), the usual RFM grid,
  first match wins:

  - ``Champions``: R 5, F 4-5;  ``Loyal``: R 3-4, F 4-5;
  - ``New``: R 5, F 1;  ``Promising``: R 4, F 1;  ``Potential loyalist``: R 4-5, F 2-3;
  - ``Need attention``: R 3, F 3;  ``About to sleep``: R 3, F 1-2;
  - ``Hibernating``: R 1-2, F 1-2;  ``At risk``: R 1-2, F 3-4;  ``Can't lose them``: R 1-2, F 5.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import days_between, last_day, score
from tierlake.analytics.jobs.job import Job, Tables


def segment(r: ir.IntegerValue, f: ir.IntegerValue) -> ir.StringValue:
    """The segment name for an ``r_score`` and ``f_score`` (the grid in the docstring)."""
    return ibis.cases(
        ((r == 5) & (f >= 4), "Champions"),
        ((r >= 3) & (f >= 4), "Loyal"),
        ((r == 5) & (f == 1), "New"),
        ((r == 4) & (f == 1), "Promising"),
        ((r >= 4) & (f <= 3), "Potential loyalist"),
        ((r == 3) & (f == 3), "Need attention"),
        (r == 3, "About to sleep"),
        (f <= 2, "Hibernating"),
        (f == 5, "Can't lose them"),
        else_="At risk",
    )


def build(t: Tables) -> ir.Table:
    orders = t["orders"].filter(_.status != "cancelled")
    per_customer = orders.group_by("customer_id").agg(
        first_order_day=_.placed_at.min().date(),
        last_order_day=_.placed_at.max().date(),
        frequency=_.id.count().cast("int64"),
        monetary_cents=_.total_cents.sum().cast("int64"),
    )
    countries = t["customers"].select(customer_id=_.id, country=_.country)
    rfm = per_customer.left_join(countries, "customer_id")
    rfm = rfm.mutate(
        customer_id=rfm.customer_id.cast("int64"),
        recency_days=days_between(last_day(t), rfm.last_order_day),
    )
    n = _.customer_id.count().over(ibis.window())
    scored = rfm.mutate(
        r_score=score(ibis.desc(_.recency_days), n),
        f_score=score(_.frequency, n),
        m_score=score(_.monetary_cents, n),
    )
    return scored.select(
        "customer_id", "country", "first_order_day", "last_order_day", "recency_days",
        "frequency", "monetary_cents", "r_score", "f_score", "m_score",
        rfm=_.r_score.cast("string") + _.f_score.cast("string") + _.m_score.cast("string"),
        segment=segment(_.r_score, _.f_score),
    )


JOB = Job(
    name="customer_segments",
    inputs=("orders", "customers"),
    description="Recency, frequency, monetary value, quintile scores and RFM segment.",
    build=build,
    order_by=("customer_id",),
)
