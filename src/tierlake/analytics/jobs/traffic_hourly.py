"""``traffic_hourly``: page views, sessions and visitors per UTC day and hour.

From the clickstream's ``page_view`` events, by the event's own ``ts`` (not the delivery
partition ``dt``). One row per hour with any page view (key ``day, hour``):

* ``day`` (date), ``hour`` (int64, 0-23): UTC.
* ``page_views`` (int64): ``page_view`` events.
* ``sessions``, ``visitors`` (int64): distinct ``session_id`` / ``visitor_id`` with a page
  view in that hour (a session spanning two hours counts in both).
"""

from __future__ import annotations

import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    views = t["clickstream"].filter(_.event_type == "page_view")
    return views.group_by(day=_.ts.date(), hour=_.ts.hour().cast("int64")).agg(
        page_views=_.event_id.count().cast("int64"),
        sessions=_.session_id.nunique().cast("int64"),
        visitors=_.visitor_id.nunique().cast("int64"),
    )


JOB = Job(
    name="traffic_hourly",
    inputs=("clickstream",),
    description="Page views, sessions and visitors per UTC day and hour.",
    build=build,
    order_by=("day", "hour"),
)
