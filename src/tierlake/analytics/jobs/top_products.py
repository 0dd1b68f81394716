"""``top_products``: the most viewed products, and how often a view led to the cart.

From clickstream events that carry a ``product_id``: ``page_view`` (a product page) and
``add_to_cart``. The products ranked ``TOP`` (50) or better by views, ties included
(key ``product_id``):

* ``rank`` (int64): 1 = most ``views``; equal counts share a rank.
* ``product_id`` (int64), ``sku``, ``product_name`` (string; NULL for a product id that is
  not in ``products``).
* ``views`` (int64): product page views; ``view_sessions`` (int64): distinct sessions with
  one; ``visitors`` (int64): distinct visitors with one.
* ``add_to_carts`` (int64): ``add_to_cart`` events; ``cart_sessions`` (int64): distinct
  sessions with one.
* ``cart_rate`` (float64): ``cart_sessions / view_sessions`` rounded half up to 4 decimals.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import ratio
from tierlake.analytics.jobs.job import Job, Tables

TOP = 50


def build(t: Tables) -> ir.Table:
    events = t["clickstream"].filter(
        _.product_id.notnull() & _.event_type.isin(("page_view", "add_to_cart"))
    )
    view, cart = events.event_type == "page_view", events.event_type == "add_to_cart"
    stats = events.group_by(product_id=_.product_id.cast("int64")).agg(
        views=events.event_id.count(where=view).cast("int64"),
        view_sessions=events.session_id.nunique(where=view).cast("int64"),
        visitors=events.visitor_id.nunique(where=view).cast("int64"),
        add_to_carts=events.event_id.count(where=cart).cast("int64"),
        cart_sessions=events.session_id.nunique(where=cart).cast("int64"),
    )
    names = t["products"].select(product_id=_.id.cast("int64"), sku=_.sku, product_name=_.name)
    ranked = stats.left_join(names, "product_id").mutate(
        rank=(ibis.rank().over(order_by=ibis.desc(_.views)) + 1).cast("int64"),
        cart_rate=ratio(_.cart_sessions, _.view_sessions),
    )
    return ranked.filter(_.rank <= TOP).select(
        "rank", "product_id", "sku", "product_name", "views", "view_sessions", "visitors",
        "add_to_carts", "cart_sessions", "cart_rate",
    )


JOB = Job(
    name="top_products",
    inputs=("clickstream", "products"),
    description="The 50 most viewed products with add-to-cart counts and rate.",
    build=build,
    order_by=("rank", "product_id"),
)
