"""``customer_directory``: who each buying customer is, and what they bought in total.

The only curated table with customer identity: the BI tier masks ``customer_name``,
``customer_email`` and ``ship_city`` for roles that may not see who a customer is, and joins
it to ``sales_lines`` by ``customer_id`` for top-customer tables and order details. Kept
apart from the order lines so that masking copies one row per customer, not per line. One
row per customer with at least one order that was not cancelled (key ``customer_id``):

* ``customer_id`` (int64).
* ``customer_name`` (string), ``customer_email`` (string, NULL once the account is
  deleted): from ``customers``.
* ``ship_city`` (string): the city of the customer's latest order (latest ``placed_at``,
  ties by the higher order id).
* ``country`` (string): ``customers.country`` (not masked: ``customer_segments`` shows it).
* ``first_order_day``, ``last_order_day`` (date, UTC).
* ``orders`` (int64): not cancelled; ``revenue_cents`` (int64): the sum of their
  ``total_cents`` (goods and shipping: what the customer paid).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    orders = t["orders"].filter(_.status != "cancelled")
    totals = orders.group_by("customer_id").agg(
        first_order_day=_.placed_at.min().date(),
        last_order_day=_.placed_at.max().date(),
        orders=_.id.count().cast("int64"),
        revenue_cents=_.total_cents.sum().cast("int64"),
    )
    latest = orders.mutate(n=ibis.row_number().over(
        group_by=_.customer_id, order_by=[ibis.desc(_.placed_at), ibis.desc(_.id)]))
    cities = latest.filter(_.n == 0).select("customer_id", ship_city=_.ship_city)
    people = t["customers"].select(customer_id=_.id, customer_name=_.name,
                                   customer_email=_.email, country=_.country)
    joined = totals.join(cities, "customer_id").join(people, "customer_id")
    return joined.select(
        customer_id=_.customer_id.cast("int64"), customer_name=_.customer_name,
        customer_email=_.customer_email, ship_city=_.ship_city, country=_.country,
        first_order_day=_.first_order_day, last_order_day=_.last_order_day,
        orders=_.orders, revenue_cents=_.revenue_cents,
    )


JOB = Job(
    name="customer_directory",
    inputs=("orders", "customers"),
    description="Each buying customer's name, e-mail, city and country, orders and revenue.",
    build=build,
    order_by=("customer_id",),
)
