"""Expression helpers the jobs share: engine-independent integer arithmetic.

Every engine computes integer sums and counts exactly; floating point is only produced as
``integer / 10**places``, which IEEE division gives identically everywhere.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Tables


def div_half_up(num: ir.IntegerValue, den: ir.IntegerValue) -> ir.IntegerValue:
    """``num / den`` rounded half up, for ``num >= 0`` and ``den > 0`` (NULL if ``den`` is 0)."""
    den = den.nullif(0)
    return ((num * 2 + den) // (den * 2)).cast("int64")


def ratio(num: ir.IntegerValue, den: ir.IntegerValue, places: int = 4) -> ir.FloatingValue:
    """``num / den`` rounded half up to ``places`` decimals (NULL if ``den`` is 0)."""
    scale = 10**places
    return (div_half_up(num * scale, den) / scale).cast("float64")


def score(order: ir.Value, n: ir.IntegerValue, buckets: int = 5) -> ir.IntegerValue:
    """Quantile score 1..``buckets`` by ascending ``order``; ties share a score.

    Like ``ntile(buckets)`` but rank based (``1 + buckets * rank // n``), so equal values
    never land in different buckets and the result does not depend on row order.
    """
    rank = ibis.rank().over(order_by=order)
    return (1 + (rank * buckets) // n).cast("int64")


def sold_lines(t: Tables) -> ir.Table:
    """Order lines of orders that were not cancelled, with the order's time and customer."""
    orders = t["orders"].filter(_.status != "cancelled")
    lines = t["order_lines"]
    return lines.join(orders, lines.order_id == orders.id).select(
        order_id=lines.order_id,
        product_id=lines.product_id,
        quantity=lines.quantity.cast("int64"),
        line_total_cents=lines.line_total_cents.cast("int64"),
        customer_id=orders.customer_id,
        placed_at=orders.placed_at,
        day=orders.placed_at.date(),
    )


def last_day(t: Tables) -> ir.DateScalar:
    """The UTC date of the latest order (any status): "today" for recency windows."""
    return t["orders"].placed_at.max().date()


def days_between(later: ir.DateValue, earlier: ir.DateValue) -> ir.IntegerValue:
    return later.delta(earlier, unit="day").cast("int64")
