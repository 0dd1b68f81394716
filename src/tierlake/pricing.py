"""Prices and shipping: the store's one rule for what an order costs.

A domain module below every tier: the app tier prices carts and orders with it
and the demo data (``tierlake.data.seed_orders``) prices its generated orders
with it, so the two can never disagree. Money is integer cents.

The functions work on plain ints and, element-wise, on numpy integer arrays
(the seed prices millions of orders at once), so the rule is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FREE_SHIPPING_FROM_CENTS = 5000
"""Orders whose goods cost at least this much ship free."""
SHIPPING_CENTS = 499
"""Flat shipping charge below the free-shipping threshold (nothing to ship: no charge)."""


@overload
def shipping_for(subtotal_cents: int) -> int: ...
@overload
def shipping_for(subtotal_cents: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def shipping_for(subtotal_cents: Any) -> Any:
    """Shipping for goods worth ``subtotal_cents``: free from the threshold, and for nothing."""
    charged = (subtotal_cents > 0) & (subtotal_cents < FREE_SHIPPING_FROM_CENTS)
    return charged * SHIPPING_CENTS


@overload
def line_total(unit_price_cents: int, quantity: int) -> int: ...
@overload
def line_total(unit_price_cents: npt.NDArray[np.int64], quantity: npt.NDArray[np.int64]
               ) -> npt.NDArray[np.int64]: ...
def line_total(unit_price_cents: Any, quantity: Any) -> Any:
    """What a line costs: unit price times quantity."""
    return unit_price_cents * quantity


@dataclass(frozen=True)
class Totals:
    """An order's or a cart's figures."""

    item_count: int
    subtotal_cents: int
    shipping_cents: int
    total_cents: int


def totals(lines: list[tuple[int, int]]) -> Totals:
    """Totals of ``(unit_price_cents, quantity)`` lines."""
    subtotal = sum(line_total(price, qty) for price, qty in lines)
    shipping = shipping_for(subtotal)
    return Totals(item_count=sum(qty for _, qty in lines), subtotal_cents=subtotal,
                  shipping_cents=shipping, total_cents=subtotal + shipping)
