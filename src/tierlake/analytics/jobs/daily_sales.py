"""``daily_sales``: revenue per UTC day and category.

Columns (one row per day and category that sold anything; key ``day, category_id``):

* ``day`` (date): the UTC date of the order's ``placed_at``.
* ``category_id`` (int64), ``category_slug``, ``category_name`` (string).
* ``orders`` (int64): distinct orders with at least one line in the category.
* ``units`` (int64): sum of line quantities.
* ``revenue_cents`` (int64): sum of ``order_lines.line_total_cents`` (goods only; shipping
  belongs to the order, not to a category).
* ``average_order_value_cents`` (int64): ``revenue_cents / orders`` rounded half up to a
  whole cent (the category's share of an average order).

Cancelled orders (``status = 'cancelled'``) are left out; every other status counts.
"""

from __future__ import annotations

import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import div_half_up, sold_lines
from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    products = t["products"].select(product_id=_.id, category_id=_.category_id)
    categories = t["categories"].select(
        category_id=_.id, category_slug=_.slug, category_name=_.name
    )
    lines = sold_lines(t).join(products, "product_id").join(categories, "category_id")
    sales = lines.group_by("day", "category_id", "category_slug", "category_name").agg(
        orders=_.order_id.nunique().cast("int64"),
        units=_.quantity.sum().cast("int64"),
        revenue_cents=_.line_total_cents.sum().cast("int64"),
    )
    return sales.mutate(
        category_id=_.category_id.cast("int64"),
        average_order_value_cents=div_half_up(_.revenue_cents, _.orders),
    )


JOB = Job(
    name="daily_sales",
    inputs=("orders", "order_lines", "products", "categories"),
    description="Revenue, orders, units and average order value per UTC day and category.",
    build=build,
    order_by=("day", "category_id"),
)
