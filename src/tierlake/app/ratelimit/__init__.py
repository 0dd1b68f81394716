"""Rate limits shared by every app instance (the `limits` library over Redis or the database)."""
