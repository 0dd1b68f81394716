"""A small seeded store, its lake (the real pipeline), and the BI settings the report, alert
and mail tests share. The store is only read here to learn what the lake must never show an
analyst (customers' e-mails); the BI code under test reads the lake alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from servers import free_port
from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.data.schema import Customer
from tierlake.pipeline.run import run_pipeline
from tierlake.seed import seed_store

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # the seeded history ends here (pinned)
# A dashboard that names customers, so the tests can see masking at work (and see that the
# leak check finds e-mails where an admin may see them).
BUYERS = """
id = "buyers"
title = "Top buyers"
order = 900
filters = []
[[visuals]]
id = "top_buyers"
title = "Top buyers"
kind = "table"
query = \"\"\"SELECT customer_email, customer_name, ship_city, revenue_cents / 100.0 AS revenue
FROM customer_directory ORDER BY revenue_cents DESC, customer_id LIMIT 15\"\"\"
formats = { revenue = "money" }
tables = ["customer_directory"]
[[visuals]]
id = "buyers_chart"
title = "Revenue of the top buyers"
kind = "bar"
query = \"\"\"SELECT customer_email, revenue_cents / 100.0 AS revenue
FROM customer_directory ORDER BY revenue_cents DESC, customer_id LIMIT 5\"\"\"
x = "customer_email"
y = ["revenue"]
format = "money"
tables = ["customer_directory"]
"""


@dataclass(frozen=True)
class ReportsLake:
    settings: Settings
    emails: frozenset[str]  # every shopper's e-mail in the store (staff accounts left out)




_shared: ReportsLake | None = None


def shared_lake(factory: pytest.TempPathFactory) -> ReportsLake:
    """One lake for every report, alert and mail test module of a session (the pipeline run
    is most of a module's time). The tests that write into its data_dir (an alerts file, the
    catcher's mail, a BI user) remove what they wrote or use names no other test reads."""
    global _shared
    if _shared is None or not _shared.settings.data_dir.is_dir():
        _shared = build_lake(factory.mktemp("reports-lake"))
    return _shared


def build_lake(root: Path, **bi: object) -> ReportsLake:
    store = Database(f"sqlite:///{root / 'store.db'}")
    migrate.upgrade(store.engine)
    seed_store(store, products=40, customers=120, orders=1500, months=3, seed=7,
               events_dir=root / "events", admin_email="admin@tierlake.test",
               admin_password="admin-password", progress=False, now=NOW)
    with store.engine.connect() as conn:
        emails = frozenset(e for (e,) in conn.execute(
            select(Customer.email).where(Customer.is_admin.is_(False))) if e)
    store.dispose()
    (root / "dashboards").mkdir()
    (root / "dashboards" / "buyers.toml").write_text(BUYERS)
    settings = Settings(data_dir=root / "var", database_url=store.url,
                        events={"dir": root / "events"}, admin_email="admin@tierlake.test",
                        bi={"smtp_port": free_port(), "dashboards_dir": root / "dashboards",
                            **bi})
    run_pipeline(settings, progress=False)
    return ReportsLake(settings, emails)
