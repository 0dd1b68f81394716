"""Orders for the demo store (see ``seed.py``): when they happen and what they hold.

Pure numpy: a calendar of hourly order rates, and chunks of orders with their lines,
customers, totals and statuses, as rows ready for ``insert()``. Times are int64
microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tierlake.pricing import line_total as priced_line
from tierlake.pricing import shipping_for
from tierlake.seed.catalogue import Catalogue, Customers, to_datetimes

HOUR_US = 3_600_000_000

SEASON = {11: 1.45, 12: 1.9, 1: 0.85, 2: 0.85, 3: 0.95, 7: 0.9, 8: 0.9, 10: 1.05}
WEEKDAY = np.array([1.08, 1.0, 0.98, 0.97, 0.9, 0.86, 1.12])  # Monday first
HOUR_OF_DAY = np.array([0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.5, 0.75, 0.95, 1.05, 1.1, 1.15,
                        1.2, 1.15, 1.1, 1.1, 1.15, 1.25, 1.4, 1.55, 1.6, 1.45, 1.1, 0.7])


def hourly_weights(start: int, now: int) -> tuple[np.ndarray, np.ndarray]:
    """Hour starts from ``start`` to ``now`` and each hour's relative order rate."""
    hours = np.arange(start // HOUR_US * HOUR_US, now, HOUR_US, dtype=np.int64)
    days = hours.astype("datetime64[us]").astype("datetime64[D]")
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    season = np.array([SEASON.get(m, 1.0) for m in range(13)])[month]
    season[(month == 11) & (mday >= 23)] = 2.6  # Black Friday to Cyber Monday
    season[(month == 12) & (mday >= 21)] = 1.3
    season[(month == 12) & (mday >= 24) & (mday <= 25)] = 0.6
    weekday = WEEKDAY[(days.astype(np.int64) + 3) % 7]
    hod = HOUR_OF_DAY[(hours // HOUR_US) % 24]
    trend = 1.0 + 0.35 * (hours - hours[0]) / max(now - hours[0], 1)
    # The first and the current hour are partial.
    part = (np.minimum(now, hours + HOUR_US) - np.maximum(start, hours)) / HOUR_US
    return hours, season * weekday * hod * trend * part


LINES_P = np.array([0.45, 0.28, 0.15, 0.08, 0.04])
QTY_P = np.array([0.78, 0.14, 0.05, 0.02, 0.01])


def draw_products(rng: np.random.Generator, cat: Catalogue, at: np.ndarray) -> np.ndarray:
    """One product per line, by popularity, among those on sale at ``at``."""
    cum = np.cumsum(cat.popularity)
    idx = np.minimum(np.searchsorted(cum, rng.random(len(at)) * cum[-1], "right"), len(cum) - 1)
    for _ in range(30):
        bad = np.flatnonzero(~cat.available(idx, at))
        if not len(bad):
            return idx
        idx[bad] = np.minimum(np.searchsorted(cum, rng.random(len(bad)) * cum[-1], "right"),
                              len(cum) - 1)
    idx[~cat.available(idx, at)] = int(np.argmax(cat.popularity))  # always on sale
    return idx


@dataclass
class OrderChunk:
    ids: np.ndarray
    cust: np.ndarray
    line_order: np.ndarray
    product: np.ndarray
    order_rows: Callable[[int, int], list[dict]]
    line_rows: Callable[[int, int], list[dict]]


def order_chunk(rng: np.random.Generator, cat: Catalogue, people: Customers,
                 placed: np.ndarray, now: int, first_order: int, first_line: int) -> OrderChunk:
    n = len(placed)
    ids = np.arange(first_order, first_order + n, dtype=np.int64)
    # The customer: anyone who had signed up by then, weighted by their propensity.
    k = np.searchsorted(people.created, placed, "left")
    assert k.min() >= 1, "the first customer signs up before the window"
    u = rng.random(n) * people.cum_weight[k - 1]
    cust = np.minimum(np.searchsorted(people.cum_weight, u, "right"), k - 1)
    # Lines: 1-5 products, distinct within an order (a repeat draw adds to the quantity).
    n_lines = rng.choice(5, size=n, p=LINES_P) + 1
    line_order = np.repeat(np.arange(n), n_lines)
    product = draw_products(rng, cat, placed[line_order])
    qty = rng.choice(5, size=len(line_order), p=QTY_P) + 1
    key, inv = np.unique(line_order * len(cat.ids) + product, return_inverse=True)
    qty = np.bincount(inv, weights=qty).astype(np.int64)
    line_order, product = key // len(cat.ids), key % len(cat.ids)
    unit = cat.price[product]
    line_total = priced_line(unit, qty)
    subtotal = np.bincount(line_order, weights=line_total, minlength=n).round().astype(np.int64)
    items = np.bincount(line_order, weights=qty, minlength=n).astype(np.int64)
    shipping = shipping_for(subtotal)
    # Status from age: paid within hours, shipped 0.5-2 days later, delivered 1-5 days later.
    paid = placed + (rng.exponential(3 * 3600, n) * 1e6).astype(np.int64) + 1_000_000
    shipped = paid + rng.integers(12 * HOUR_US, 48 * HOUR_US, n)
    delivered = shipped + rng.integers(24 * HOUR_US, 120 * HOUR_US, n)
    cancel = placed + (rng.uniform(0.05, 0.9, n) * (shipped - placed)).astype(np.int64)
    cancelled = (rng.random(n) < 0.025) & (cancel <= now)
    steps = [(cancelled, "cancelled", cancel), (delivered <= now, "delivered", delivered),
             (shipped <= now, "shipped", shipped), (paid <= now, "paid", paid)]
    status = np.select([c for c, _, _ in steps], [s for _, s, _ in steps], "placed")
    changed = np.select([c for c, _, _ in steps], [t for _, _, t in steps], placed)

    placed_at, changed_at = to_datetimes(placed), to_datetimes(changed)
    c_ids, c_list = people.ids[cust].tolist(), cust.tolist()
    o_ids = ids.tolist()

    def order_rows(lo: int, hi: int) -> list[dict]:
        rows = []
        for i in range(lo, hi):
            c = c_list[i]
            rows.append({
                "id": o_ids[i], "customer_id": c_ids[i], "idempotency_key": f"seed-{o_ids[i]}",
                "status": str(status[i]), "item_count": int(items[i]),
                "subtotal_cents": int(subtotal[i]), "shipping_cents": int(shipping[i]),
                "total_cents": int(subtotal[i] + shipping[i]), "ship_name": people.names[c],
                "ship_address": people.address[c], "ship_city": people.city[c],
                "ship_postcode": people.postcode[c], "ship_country": people.country[c],
                "placed_at": placed_at[i], "created_at": placed_at[i],
                "updated_at": changed_at[i],
            })
        return rows

    l_order, l_prod = line_order.tolist(), product.tolist()
    l_qty, l_unit, l_total = qty.tolist(), unit.tolist(), line_total.tolist()
    p_ids = cat.ids.tolist()

    def line_rows(lo: int, hi: int) -> list[dict]:
        return [{
            "id": first_line + j, "order_id": o_ids[l_order[j]], "product_id": p_ids[l_prod[j]],
            "product_name": cat.names[l_prod[j]], "quantity": l_qty[j],
            "unit_price_cents": l_unit[j], "line_total_cents": l_total[j],
            "created_at": placed_at[l_order[j]], "updated_at": placed_at[l_order[j]],
        } for j in range(lo, hi)]

    return OrderChunk(ids, cust, line_order, product, order_rows, line_rows)
