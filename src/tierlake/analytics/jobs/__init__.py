"""The analytics jobs: one module per curated table, each a plain Ibis expression builder.

A new job is a new module here with a ``JOB = Job(...)`` and one line in :data:`JOBS`.
Each module's docstring documents its table's columns. Shared conventions: money is
integer cents (int64); days are UTC dates; cancelled orders are left out of sales;
"the last N days" is relative to the latest order in the data, never the wall clock;
ratios are rounded half up to 4 decimals with integer arithmetic, so every engine
gives the same numbers.
"""

from __future__ import annotations

from tierlake.analytics.jobs import (
    cohort_retention,
    customer_directory,
    customer_segments,
    daily_sales,
    funnel,
    lb_minutely,
    product_performance,
    sales_lines,
    top_pages,
    top_products,
    traffic_hourly,
    traffic_paths,
)
from tierlake.analytics.jobs.job import Job, Tables

JOBS: list[Job] = [
    daily_sales.JOB,
    product_performance.JOB,
    customer_segments.JOB,
    cohort_retention.JOB,
    traffic_hourly.JOB,
    top_pages.JOB,
    top_products.JOB,
    funnel.JOB,
    lb_minutely.JOB,
    sales_lines.JOB,
    customer_directory.JOB,
    traffic_paths.JOB,
]

__all__ = ["JOBS", "Job", "Tables", "get_job"]


def get_job(name: str) -> Job:
    """The registered job called ``name``."""
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(f"no analytics job {name!r}; known: {', '.join(j.name for j in JOBS)}")

