"""The tables the BI tier can read: the lake's curated tables and the pipeline's own state.

Each entry says how the page's filters, the row rules and the identity masks apply to it
(:class:`~tierlake.bi.model.TableMeta`); the SQL page lists them. A curated table missing
here is not visible in the BI tier at all, so a new job's table is shown only once someone
has decided which of its columns say who a customer is.

The ``pipeline_*`` tables are not in the lake: the engine builds them in memory from the
pipeline's status file and the lake's catalog (what `tierlake pipeline status` shows), so
the Pipeline dashboard reads its freshness the same way the other dashboards read sales.
"""

from __future__ import annotations

from tierlake.bi.model import TableMeta

CURATED: dict[str, TableMeta] = {m.name: m for m in (
    TableMeta(name="sales_lines", date_column="day", category_column="category_slug",
              description="Every sold order line: day, customer id, first-order flag, "
                          "product, category, quantity, line total (cents)."),
    TableMeta(name="customer_directory",
              identity_columns=("customer_name", "customer_email", "ship_city"),
              description="Each buying customer: name, e-mail, city (masked for analysts), "
                          "country, first and last order day, orders, revenue (cents)."),
    TableMeta(name="daily_sales", date_column="day", category_column="category_slug",
              description="Revenue, orders, units and average order value per day and "
                          "category (cents)."),
    TableMeta(name="product_performance", category_column="category_slug",
              description="Per product, all time: units, revenue, rank, last-30-day sales, "
                          "stock on hand, stock cover days, slow mover flag."),
    TableMeta(name="customer_segments",
              description="Per customer: recency, frequency, monetary value (cents), RFM "
                          "scores and segment."),
    TableMeta(name="cohort_retention",
              description="Monthly cohorts by first order: size, active customers and "
                          "retention rate per month since the first."),
    TableMeta(name="traffic_hourly", date_column="day",
              description="Page views, sessions and visitors per UTC day and hour "
                          "(clickstream)."),
    TableMeta(name="traffic_paths", date_column="day",
              description="Requests, 4xx, 5xx and error rate per UTC hour and site section "
                          "(clickstream)."),
    TableMeta(name="top_pages",
              description="The 50 most viewed pages, all time (clickstream)."),
    TableMeta(name="top_products",
              description="The 50 most viewed products and their add-to-cart rate, all time "
                          "(clickstream)."),
    TableMeta(name="funnel", date_column="day",
              description="Sessions per day and how many viewed a product, added to the "
                          "cart, checked out and bought."),
    TableMeta(name="lb_minutely", date_column="day",
              description="Requests, 4xx/5xx, latency percentiles (ms) and bytes per load "
                          "balancer, target group and UTC minute (access logs)."),
)}

PIPELINE: dict[str, TableMeta] = {m.name: m for m in (
    TableMeta(name="pipeline_tables",
              description="Every lake table (not in the lake: the pipeline's state): zone, "
                          "name, Delta version, rows, files, bytes, last commit, its age in "
                          "seconds, and the changes waiting in the log (rows, oldest age)."),
    TableMeta(name="pipeline_runs",
              description="The pipeline's last run (not in the lake): when it finished, ok, "
                          "error, engine, seconds, last success, rows extracted and written."),
    TableMeta(name="pipeline_moves",
              description="Rows the last run moved (not in the lake): stage (extract or "
                          "job), table, rows."),
)}

TABLES: dict[str, TableMeta] = {**CURATED, **PIPELINE}

# Columns masked wherever they appear, whatever the table's entry says: a second line of
# defence should a query or a new table carry identity under a familiar name.
IDENTITY_NAMES = frozenset({
    "customer_name", "customer_email", "email", "name_of_customer", "ship_name",
    "ship_address", "ship_city", "ship_postcode",
})


def table_meta(name: str) -> TableMeta:
    """The entry of table ``name``; a ``KeyError`` names the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no BI table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def list_tables() -> list[TableMeta]:
    """Every table the SQL page may query, curated first, by name."""
    return sorted(CURATED.values(), key=lambda m: m.name) + sorted(
        PIPELINE.values(), key=lambda m: m.name)
