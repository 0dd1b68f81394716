"""The analytics jobs (the EMR step): curated tables from the lake, on DuckDB or Spark.

Each transformation is defined once, as an Ibis expression (:mod:`.jobs`), and runs on
any :mod:`engine <.engines>`; :func:`~tierlake.analytics.runner.run_jobs` runs them.
"""
