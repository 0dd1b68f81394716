"""``product_performance``: sales, rank, stock and slow movers per product.

One row per product (all of them, sold or not; key ``product_id``):

* ``product_id`` (int64), ``sku``, ``product_name``, ``category_slug`` (string),
  ``active`` (bool), ``price_cents`` (int64).
* ``orders``, ``units``, ``revenue_cents`` (int64): all time, cancelled orders left out;
  revenue is the sum of line totals.
* ``revenue_rank`` (int64): ``dense_rank`` by ``revenue_cents`` descending, 1 = best seller.
* ``units_30d``, ``revenue_30d_cents`` (int64): the last 30 days, i.e. orders whose UTC date
  is at most 29 days before the date of the latest order in the data (not the wall clock,
  so a run is reproducible).
* ``stock_on_hand`` (int64): ``inventory.quantity`` (0 without an inventory row).
* ``stock_cover_days`` (int64, nullable): ``stock_on_hand / (units_30d / 30)`` rounded half
  up to whole days; NULL when nothing sold in the last 30 days.
* ``slow_mover`` (bool): stock on hand and either no sale in the last 30 days or
  ``units_30d`` in the bottom decile of all products (rank by ``units_30d``, ties equal:
  ``rank * 10 < product count``).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import days_between, div_half_up, last_day, sold_lines
from tierlake.analytics.jobs.job import Job, Tables

WINDOW_DAYS = 30


def build(t: Tables) -> ir.Table:
    lines = sold_lines(t)
    lines = lines.mutate(days_ago=days_between(last_day(t), lines.day))
    recent = _.days_ago < WINDOW_DAYS
    sales = lines.group_by("product_id").agg(
        orders=_.order_id.nunique().cast("int64"),
        units=_.quantity.sum().cast("int64"),
        revenue_cents=_.line_total_cents.sum().cast("int64"),
        units_30d=_.quantity.sum(where=recent).cast("int64"),
        revenue_30d_cents=_.line_total_cents.sum(where=recent).cast("int64"),
    )
    categories = t["categories"].select(category_id=_.id, category_slug=_.slug)
    stock = t["inventory"].select(product_id=_.product_id, stock_on_hand=_.quantity)
    products = t["products"].select(
        product_id=_.id.cast("int64"), sku=_.sku, product_name=_.name,
        category_id=_.category_id, active=_.active, price_cents=_.price_cents.cast("int64"),
    )
    joined = (
        products.join(categories, "category_id")
        .left_join(sales, "product_id")
        .left_join(stock, "product_id")
    )
    zero = ibis.literal(0, "int64")
    base = joined.select(
        "product_id", "sku", "product_name", "category_slug", "active", "price_cents",
        orders=_.orders.coalesce(zero), units=_.units.coalesce(zero),
        revenue_cents=_.revenue_cents.coalesce(zero), units_30d=_.units_30d.coalesce(zero),
        revenue_30d_cents=_.revenue_30d_cents.coalesce(zero),
        stock_on_hand=_.stock_on_hand.cast("int64").coalesce(zero),
    )
    n_products = _.product_id.count().over(ibis.window())
    slow_rank = ibis.rank().over(order_by=_.units_30d)
    return base.select(
        "product_id", "sku", "product_name", "category_slug", "active", "price_cents",
        "orders", "units", "revenue_cents",
        revenue_rank=(ibis.dense_rank().over(order_by=ibis.desc(_.revenue_cents)) + 1)
        .cast("int64"),
        units_30d=_.units_30d, revenue_30d_cents=_.revenue_30d_cents,
        stock_on_hand=_.stock_on_hand,
        stock_cover_days=div_half_up(_.stock_on_hand * WINDOW_DAYS, _.units_30d),
        slow_mover=(_.stock_on_hand > 0)
        & ((_.units_30d == 0) | (slow_rank * 10 < n_products)),
    )


JOB = Job(
    name="product_performance",
    inputs=("orders", "order_lines", "products", "categories", "inventory"),
    description="Units, revenue, revenue rank, stock cover and slow movers per product.",
    build=build,
    order_by=("product_id",),
)
