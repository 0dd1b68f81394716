"""``top_pages``: the most viewed pages.

From the clickstream's ``page_view`` events, grouped by ``path`` (query strings are not part
of ``path``). The pages ranked ``TOP`` (50) or better, ties included (key ``path``):

* ``rank`` (int64): 1 = most ``page_views``; equal counts share a rank (``rank()``).
* ``path`` (string).
* ``page_views``, ``sessions``, ``visitors`` (int64): events, distinct sessions, distinct
  visitors.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Job, Tables

TOP = 50


def build(t: Tables) -> ir.Table:
    views = t["clickstream"].filter(_.event_type == "page_view")
    pages = views.group_by("path").agg(
        page_views=_.event_id.count().cast("int64"),
        sessions=_.session_id.nunique().cast("int64"),
        visitors=_.visitor_id.nunique().cast("int64"),
    )
    ranked = pages.mutate(rank=(ibis.rank().over(order_by=ibis.desc(_.page_views)) + 1)
                          .cast("int64"))
    return ranked.filter(_.rank <= TOP).select("rank", "path", "page_views", "sessions",
                                              "visitors")


JOB = Job(
    name="top_pages",
    inputs=("clickstream",),
    description="The 50 most viewed pages (ties included) with sessions and visitors.",
    build=build,
    order_by=("rank", "path"),
)
