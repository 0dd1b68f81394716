"""``funnel``: sessions per UTC day, and how far they got.

A session (``session_id``) belongs to the UTC date of its first event; its stages are
read over all its events. One row per day with any session (key ``day``):

* ``day`` (date).
* ``sessions`` (int64): sessions that started that day.
* ``product_view_sessions`` (int64): with a ``page_view`` of a product (``product_id`` set).
* ``cart_sessions`` (int64): with an ``add_to_cart``.
* ``checkout_sessions`` (int64): with a ``checkout``.
* ``purchase_sessions`` (int64): with a ``purchase`` whose ``order_id`` is an order in the
  ``orders`` table (any status), so only real orders count.
* ``product_view_rate``, ``cart_rate``, ``checkout_rate``, ``conversion_rate`` (float64):
  each stage's sessions / ``sessions``, rounded half up to 4 decimals.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import ratio
from tierlake.analytics.jobs.job import Job, Tables

STAGES = ("product_view", "cart", "checkout", "purchase")


def build(t: Tables) -> ir.Table:
    events = t["clickstream"]
    real = t["orders"].select(real_order_id=_.id)
    purchases = (
        events.filter(_.event_type == "purchase")
        .semi_join(real, events.order_id == real.real_order_id)
        .select("session_id").distinct().mutate(purchase=ibis.literal(1, "int64"))
    )
    one, zero = ibis.literal(1, "int64"), ibis.literal(0, "int64")
    flag = {
        "product_view": (_.event_type == "page_view") & _.product_id.notnull(),
        "cart": _.event_type == "add_to_cart",
        "checkout": _.event_type == "checkout",
    }
    per_session = events.group_by("session_id").agg(
        day=_.ts.min().date(), **{k: ibis.ifelse(v, one, zero).max() for k, v in flag.items()}
    ).left_join(purchases, "session_id").mutate(purchase=_.purchase.coalesce(zero))
    days = per_session.group_by("day").agg(
        sessions=_.session_id.count().cast("int64"),
        **{f"{s}_sessions": _[s].sum().cast("int64") for s in STAGES},
    )
    rates = {
        f"{'conversion' if s == 'purchase' else s}_rate": ratio(_[f"{s}_sessions"], _.sessions)
        for s in STAGES
    }
    return days.mutate(**rates)


JOB = Job(
    name="funnel",
    inputs=("clickstream", "orders"),
    description="Sessions per day and how many viewed a product, carted, checked out, bought.",
    build=build,
    order_by=("day",),
)
