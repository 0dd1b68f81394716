"""Demo data for every tier: the store database and the clickstream history.

Seeding sits above the tiers it fills (it writes the database through :mod:`tierlake.data`,
hashes passwords as :mod:`tierlake.app` does and delivers event files in the format of
:mod:`tierlake.events`), so none of those tiers imports it. Modules: :mod:`.store`
(``seed_store``), :mod:`.catalogue` (word lists, products, customers), :mod:`.orders` (the
calendar, orders and lines), :mod:`.clicks` (the clickstream history).
"""

from tierlake.seed.store import (
    DEMO_PASSWORD,
    SeedInfo,
    StoreNotEmptyError,
    is_empty,
    seed_store,
)

__all__ = ["DEMO_PASSWORD", "SeedInfo",
           "StoreNotEmptyError", "is_empty", "seed_store"]
