"""``traffic_paths``: requests and errors per UTC hour and section of the site.

From every clickstream event (each is a request the web tier answered: its ``method``,
``path`` and ``status``), by the event's own ``ts``. Paths are grouped by their first
segment (``/products/blue-mug`` -> ``/products``; ``/`` stays ``/``), so the table stays
small however many products there are. One row per hour and group with any request (key
``day, hour, path_group``):

* ``day`` (date), ``hour`` (int64, 0-23): UTC.
* ``path_group`` (string): ``/`` followed by the path's first segment, or ``/``.
* ``requests`` (int64): events.
* ``client_errors`` (int64): events with a 4xx ``status``; ``server_errors`` (int64): 5xx.
* ``error_rate`` (float64): ``(client_errors + server_errors) / requests`` rounded half up
  to 4 decimals.
"""

from __future__ import annotations

import ibis.expr.types as ir
from ibis import _

from tierlake.analytics.jobs._expr import ratio
from tierlake.analytics.jobs.job import Job, Tables


def build(t: Tables) -> ir.Table:
    events = t["clickstream"].mutate(
        path_group="/" + _.path.re_extract(r"^/([^/?#]*)", 1).fill_null(""),
        code=_.status.cast("int64"),
    )
    hourly = events.group_by(day=_.ts.date(), hour=_.ts.hour().cast("int64"),
                             path_group=_.path_group).agg(
        requests=_.event_id.count().cast("int64"),
        client_errors=((_.code >= 400) & (_.code < 500)).ifelse(1, 0).sum().cast("int64"),
        server_errors=(_.code >= 500).ifelse(1, 0).sum().cast("int64"),
    )
    return hourly.mutate(error_rate=ratio(_.client_errors + _.server_errors, _.requests))


JOB = Job(
    name="traffic_paths",
    inputs=("clickstream",),
    description="Requests, 4xx and 5xx and the error rate per UTC hour and site section.",
    build=build,
    order_by=("day", "hour", "path_group"),
)
