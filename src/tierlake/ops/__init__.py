"""Operations: CloudWatch-style metrics and alarms, and their Prometheus exposition."""
