"""The analytics pipeline: extract (RDS -> S3), then jobs (EMR) -> curated tables."""
