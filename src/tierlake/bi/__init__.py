"""The BI tier (QuickSight's role): dashboards, exploration, reports and alerts over the
lake's curated zone, for the store's staff. It never reads the store's database."""
