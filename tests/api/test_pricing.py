"""One rule for prices and shipping, the same for a cart, an order and the demo data."""

from __future__ import annotations

import numpy as np

from tierlake import pricing
from tierlake.seed import orders as seed_orders


def test_shipping_is_free_from_the_threshold_and_for_nothing() -> None:
    cases = {0: 0, 1: pricing.SHIPPING_CENTS, pricing.FREE_SHIPPING_FROM_CENTS - 1:
             pricing.SHIPPING_CENTS, pricing.FREE_SHIPPING_FROM_CENTS: 0, 10**9: 0}
    for subtotal, shipping in cases.items():
        assert pricing.shipping_for(subtotal) == shipping
    # Element-wise on the seed's numpy arrays: the same answers.
    array = pricing.shipping_for(np.array(list(cases), dtype=np.int64))
    assert array.tolist() == list(cases.values())


def test_totals_add_up() -> None:
    small = pricing.totals([(250, 2), (99, 1)])
    assert (small.item_count, small.subtotal_cents, small.shipping_cents, small.total_cents) == (
        3, 599, pricing.SHIPPING_CENTS, 599 + pricing.SHIPPING_CENTS)
    assert pricing.totals([(6000, 1)]).total_cents == 6000
    assert pricing.totals([]).total_cents == 0


def test_the_seed_prices_with_the_same_module() -> None:
    assert seed_orders.shipping_for is pricing.shipping_for
    assert not hasattr(seed_orders, "SHIPPING_CENTS")
