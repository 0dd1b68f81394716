"""``sales_lines``: every sold order line, narrow, for the BI tier's KPIs, drills and rules.

The BI tier's fact table: KPI tiles (revenue, orders, average order value, new and
returning customers), drill-down from category to product and drill-to-detail read it with
the page's date range and category filters, and category rules (row-level security) filter
it by ``category_slug``. It carries no name, e-mail or address: who a customer is lives in
the small ``customer_directory`` table, so masking identity never copies 10M rows. One row
per line of an order that was not cancelled (key ``line_id``):

* ``line_id`` (int64): ``order_lines.id``; ``order_id`` (int64).
* ``day`` (date): the UTC date of the order's ``placed_at`` (the time itself is left out:
  Spark writes timestamps without their UTC zone, and every engine must give one table).
* ``customer_id`` (int64).
* ``first_order`` (bool): the order is the customer's first that was not cancelled (the
  earliest ``placed_at``, ties by order id): a customer is *new* in a period when their
  first order is in it, *returning* otherwise.
* ``product_id`` (int64), ``category_slug`` (string): the product's category now.
* ``quantity`` (int64); ``line_total_cents`` (int64): ``order_lines.line_total_cents``
  (goods only; shipping belongs to the order, as in ``daily_sales``).

Cancelled orders (``status = 'cancelled'``) are left out, as everywhere in sales.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    orders = t["orders"].filter(_.status != "cancelled")
    orders = orders.select(
        order_id=_.id.cast("int64"), customer_id=_.customer_id.cast("int64"),
        placed_at=_.placed_at,
        first_order=ibis.row_number().over(
            group_by=_.customer_id, order_by=[_.placed_at, _.id]) == 0,
    )
    lines = t["order_lines"].select(
        line_id=_.id.cast("int64"), order_id=_.order_id.cast("int64"),
        product_id=_.product_id.cast("int64"), quantity=_.quantity.cast("int64"),
        line_total_cents=_.line_total_cents.cast("int64"),
    )
    products = t["products"].select(product_id=_.id.cast("int64"), category_id=_.category_id)
    categories = t["categories"].select(category_id=_.id, category_slug=_.slug)
    joined = (lines.join(orders, "order_id").join(products, "product_id")
              .join(categories, "category_id"))
    return joined.select(
        "line_id", "order_id", day=_.placed_at.date(), customer_id=_.customer_id,
        first_order=_.first_order, product_id=_.product_id, category_slug=_.category_slug,
        quantity=_.quantity, line_total_cents=_.line_total_cents,
    )


JOB = Job(
    name="sales_lines",
    inputs=("orders", "order_lines", "products", "categories"),
    description="Every sold order line with its day, customer, first-order flag and category.",
    build=build,
    order_by=("line_id",),
)
