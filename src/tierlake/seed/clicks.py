"""Clickstream history matching the seeded orders (see ``seed.py``).

Events look like the store front's own (``tierlake.web.tracking``): a ``page_view`` per
HTML page (``/``, ``/c/<slug>``, ``/p/<slug>``, ``/search`` with ``query``, ``/cart``,
``/login``, ``/checkout``, ``/orders/<id>``), plus ``search`` and ``checkout`` beside the
page view of the same request, ``add_to_cart`` (``POST /cart/add``),
``remove_from_cart`` (``POST /cart/items/<id>/remove``) and ``purchase``
(``POST /checkout``, with ``order_id``). Cart actions need an account, so events before
a login carry no ``customer_id``.

For every order, a session that lands on the store, looks at a few products (via
category pages or searches), adds the ones it bought, checks out and purchases: the
``purchase`` event is stamped a few milliseconds after the order's ``placed_at`` (as the
live web tier records it once the app tier has answered), and
the confirmation page follows. Besides those, ``browse_ratio`` times as many sessions
that buy nothing: browsing, searching, some add-to-cart and abandoned checkouts, and
anonymous visitors who stop at the login page.

Referrers are an external site (or none) on a session's first page, then the previous
page's URL on the store's default address. Files use the web tier's layout
(``tierlake.events``): one delivery per hour of history, partitioned by the
hour of its last event.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import numpy as np

from tierlake.events import write_delivery
from tierlake.seed.catalogue import CATEGORIES, Catalogue, Customers

HOUR_US = 3_600_000_000
SECOND = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
    "Safari/537.36",
)
UA_SHARE = np.array([0.30, 0.15, 0.28, 0.17, 0.06, 0.04])
REFERRERS = (None, "https://www.google.com/", "https://www.bing.com/",
             "https://www.instagram.com/", "https://newsletter.example.com/",
             "https://www.facebook.com/")
REF_SHARE = np.array([0.38, 0.35, 0.05, 0.09, 0.08, 0.05])
STORE_URL = "http://127.0.0.1:8000"  # the store front's default address, for Referer


def _vid(seed: int, kind: str, n: int) -> str:
    return hashlib.blake2b(f"{seed}:{kind}:{n}".encode(), digest_size=16).hexdigest()


class _Json:
    """JSON texts of the few distinct strings sessions repeat (catalogue paths, agents)."""

    def __init__(self) -> None:
        self.cache: dict[str | None, str] = {None: "null"}

    def __call__(self, value: str | None) -> str:
        text = self.cache.get(value)
        if text is None:
            text = self.cache[value] = json.dumps(value, ensure_ascii=False)
        return text


class _Draws:
    """Random numbers drawn from ``rng`` in blocks (numpy per scalar is slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15) -> None:
        self.rng, self.block = rng, block
        self._u: list[float] = []
        self._g: list[float] = []

    def u(self) -> float:
        if not self._u:
            self._u = self.rng.random(self.block).tolist()
        return self._u.pop()

    def gap(self, median_s: float) -> int:
        """A think time around ``median_s`` seconds (log-normal), in microseconds."""
        if not self._g:
            self._g = np.exp(self.rng.normal(0, 0.6, self.block)).tolist()
        return int(median_s * SECOND * self._g.pop()) + 300_000

    def pick(self, cum: list[float]) -> int:
        return min(bisect.bisect_right(cum, self.u() * cum[-1]), len(cum) - 1)


class _Session:
    """Collects one session's events as (ts, JSON text after the ts) rows."""

    __slots__ = ("rows", "t", "sid", "vid", "who", "tail", "ref", "end", "js")

    def __init__(self, rows: list, t: int, sid: str, vid: str, cid: int | None, tail: str,
                 ref: str | None, end: int, js: _Json) -> None:
        self.rows, self.t, self.sid, self.vid, self.tail = rows, t, sid, vid, tail
        self.ref, self.end, self.js = ref, end, js
        self.login(cid)

    def login(self, cid: int | None) -> None:
        """Events from now on carry ``cid`` (None: logged out)."""
        self.who = (f'"session_id":"{self.sid}","visitor_id":"{self.vid}",'
                    f'"customer_id":{"null" if cid is None else cid}')

    def add(self, etype: str, path: str, *, method: str = "GET", status: int = 200,
            product: int | None = None, category: str | None = None, query: str | None = None,
            order: int | None = None, at: int | None = None, page: bool = False) -> None:
        """One event; ``page=True`` records the page_view of the same GET before it."""
        t = self.t if at is None else at
        if t > self.end:
            return
        js = self.js
        # /orders/<id> is unique per order: not worth caching
        path_json = js(path) if order is None else json.dumps(path)
        body = (f'"method":"{method}","path":{path_json},"status":{status},'
                f'"product_id":{"null" if product is None else product},'
                f'"category":{js(category)},"query":{js(query)},'
                f'"order_id":{"null" if order is None else order},'
                f'"referrer":{js(self.ref)},{self.tail}')
        if page:
            self.rows.append((t, f'"event_type":"page_view",{self.who},{body}'))
        self.rows.append((t, f'"event_type":"{etype}",{self.who},{body}'))
        if method == "GET" and status == 200 and order is None:
            self.ref = STORE_URL + (path if query is None else f"{path}?q={quote_plus(query)}")


@dataclass
class ClickGenerator:
    """Turns batches of orders into clickstream rows, and rows into hourly deliveries."""

    directory: Path
    catalogue: Catalogue
    customers: Customers
    rng: np.random.Generator
    seed: int
    now: int
    hours: np.ndarray  # hour starts of the history (epoch us) ...
    weights: np.ndarray  # ... and their relative traffic
    orders: int  # orders in the whole history
    browse_ratio: float = 4.0  # non-buying sessions per order
    source: str = "seed"
    events: int = 0
    files: int = 0
    _pending_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    _pending_rows: list[str] = field(default_factory=list)
    _seq: int = 0
    _browsed_to: int = 0  # index of the first hour without browsing sessions yet

    def __post_init__(self) -> None:
        c = self.catalogue
        self._draw = _Draws(self.rng)
        self._js = _Json()
        self._cum_pop = np.cumsum(c.popularity).tolist()
        self._created, self._retired = c.created.tolist(), c.retired.tolist()
        self._slugs, self._ids = c.slugs, c.ids.tolist()
        self._cat_slugs = [CATEGORIES[i].slug for i in c.category.tolist()]
        self._cat_of = c.category.tolist()
        self._cum_ua = np.cumsum(UA_SHARE).tolist()
        self._cum_ref = np.cumsum(REF_SHARE).tolist()
        self._cust_ids = self.customers.ids.tolist()
        self._cum_cust = self.customers.cum_weight.tolist()
        self._anon_pool = max(1000, 3 * len(self.customers.ids))
        self.browse_rate = self.browse_ratio * self.orders / max(float(self.weights.sum()), 1e-9)
        self._tail_src = f'"source":{json.dumps(self.source)}}}'

    # -- generation -------------------------------------------------------------------------

    def _popular_at(self, k: int, at: int) -> list[int]:
        """``k`` draws by popularity, less those not on sale at ``at``."""
        out = []
        for _ in range(k):
            p = self._draw.pick(self._cum_pop)
            r = self._retired[p]
            if self._created[p] < at and (r < 0 or at < r):
                out.append(p)
        return out

    def _session(self, rows: list, start: int, cid: int | None, visitor: str) -> _Session:
        d = self._draw
        ua = USER_AGENTS[d.pick(self._cum_ua)]
        ref = REFERRERS[d.pick(self._cum_ref)]
        tail = f'"user_agent":{self._js(ua)},{self._tail_src}'
        return _Session(rows, start, self.rng.bytes(16).hex(), visitor, cid, tail, ref,
                        self.now, self._js)

    def _search_term(self, p: int) -> str:
        terms = self.catalogue.search_terms[self._cat_of[p]]
        return terms[int(self._draw.u() * len(terms))]

    def _view_product(self, s: _Session, p: int) -> None:
        cat, via, d = self._cat_slugs[p], self._draw.u(), self._draw
        if via < 0.35:
            s.add("page_view", f"/c/{cat}", category=cat)
            s.t += d.gap(20)
        elif via < 0.5:
            s.add("search", "/search", query=self._search_term(p), page=True)
            s.t += d.gap(15)
        s.add("page_view", f"/p/{self._slugs[p]}", product=self._ids[p], category=cat)

    def _add(self, s: _Session, p: int) -> None:
        s.add("add_to_cart", "/cart/add", method="POST", status=303, product=self._ids[p],
              category=self._cat_slugs[p])
        s.t += self._draw.gap(2)
        s.add("page_view", "/cart")  # the store front shows the cart after adding

    def _remove(self, s: _Session, p: int) -> None:
        s.add("remove_from_cart", f"/cart/items/{self._ids[p]}/remove", method="POST",
              status=303, product=self._ids[p])
        s.t += self._draw.gap(2)
        s.add("page_view", "/cart")

    def _landing(self, s: _Session) -> None:
        if self._draw.u() < 0.55:
            s.add("page_view", "/")
            s.t += self._draw.gap(12)

    def purchase_session(self, rows: list, order_id: int, placed: int, cust: int,
                         products: list[int]) -> None:
        d = self._draw
        cid = self._cust_ids[cust]
        first = len(rows)
        logged_in = d.u() < 0.6  # the others log in when they first add to the cart
        s = self._session(rows, 0, cid if logged_in else None, _vid(self.seed, "c", cid))
        # Lay the session out from t=0, then shift it so the purchase lands at placed_at.
        self._landing(s)
        for p in products:
            for other in self._popular_at(int(d.u() * 3), placed):  # looked, not bought
                self._view_product(s, other)
                s.t += d.gap(25)
            self._view_product(s, p)
            s.t += d.gap(30)
            if not logged_in:
                s.add("page_view", "/login")
                s.t += d.gap(20)
                s.login(cid)
                logged_in = True
            self._add(s, p)
            s.t += d.gap(15)
        if d.u() < 0.1:  # second thoughts
            (p,) = self._popular_at(1, placed) or products[:1]
            if p not in products:
                self._view_product(s, p)
                s.t += d.gap(20)
                self._add(s, p)
                s.t += d.gap(20)
                self._remove(s, p)
                s.t += d.gap(10)
        s.add("checkout", "/checkout", page=True)
        s.t += d.gap(90)
        purchase_at = placed + 5_000 + int(d.u() * 75_000)
        shift = purchase_at - s.t
        rows[first:] = [(t + shift, body) for t, body in rows[first:]]
        s.t = purchase_at
        s.add("purchase", "/checkout", method="POST", status=303, order=order_id)
        s.t = placed + 150_000 + int(d.u() * 2 * SECOND)
        s.add("page_view", f"/orders/{order_id}")  # the confirmation page

    def browse_session(self, rows: list, start: int, signed_up: int) -> None:
        """A session that buys nothing; ``signed_up`` customers existed at ``start``."""
        d = self._draw
        if signed_up and d.u() < 0.3:
            k = min(bisect.bisect_right(self._cum_cust, d.u() * self._cum_cust[signed_up - 1]),
                    signed_up - 1)
            cid: int | None = self._cust_ids[k]
            visitor = _vid(self.seed, "c", self._cust_ids[k])
        else:
            anon = int(d.u() ** 3 * self._anon_pool)  # a few visitors come back often
            cid, visitor = None, _vid(self.seed, "a", anon)
        s = self._session(rows, start, cid, visitor)
        self._landing(s)
        viewed = self._popular_at(1 + int(math.log(1 - d.u()) / math.log(0.65)), start)
        for p in viewed:
            self._view_product(s, p)
            s.t += d.gap(30)
        if d.u() < 0.01:
            s.add("page_view", "/p/discontinued-item", status=404)
            s.t += d.gap(5)
        if not viewed or d.u() >= 0.25:
            return
        if cid is None:  # adding to the cart needs an account: most leave at the login page
            s.add("page_view", "/login")
            return
        p = viewed[-1]
        self._add(s, p)
        s.t += d.gap(20)
        roll = d.u()
        if roll < 0.15:
            s.add("checkout", "/checkout", page=True)  # and abandons it
        elif roll < 0.25:
            self._remove(s, p)

    def add_orders(self, order_ids: np.ndarray, placed: np.ndarray, cust: np.ndarray,
                   line_order: np.ndarray, line_product: np.ndarray) -> None:
        """Sessions for a batch of orders (sorted by time, after the previous batch's) and
        the browsing sessions of the hours up to the batch's last order."""
        rows: list[tuple[int, str]] = []
        bounds = np.searchsorted(line_order, np.arange(len(order_ids) + 1)).tolist()
        prods = line_product.tolist()
        for i, (oid, t, cu) in enumerate(zip(order_ids.tolist(), placed.tolist(),
                                             cust.tolist(), strict=True)):
            self.purchase_session(rows, oid, t, cu, prods[bounds[i]:bounds[i + 1]])
        self._browse(rows, int(np.searchsorted(self.hours, placed[-1], "right")))
        self._emit(rows, keep_from=int(placed[-1]) // HOUR_US - 2)

    def _browse(self, rows: list[tuple[int, str]], upto: int) -> None:
        """Browsing sessions for hours ``[_browsed_to, upto)``, as many as their traffic."""
        lo, self._browsed_to = self._browsed_to, max(self._browsed_to, upto)
        if upto <= lo:
            return
        w = self.weights[lo:upto]
        n = int(self.rng.poisson(self.browse_rate * w.sum()))
        hour = self.hours[lo:upto][self.rng.choice(len(w), size=n, p=w / w.sum())]
        span = np.minimum(self.now - hour, HOUR_US)
        starts = np.sort(hour + (self.rng.random(n) * span).astype(np.int64))
        signed_up = np.searchsorted(self.customers.created, starts).tolist()
        for start, k in zip(starts.tolist(), signed_up, strict=True):
            self.browse_session(rows, start, k)

    # -- delivery ---------------------------------------------------------------------------

    def _emit(self, rows: list[tuple[int, str]], keep_from: int | None) -> None:
        n = len(rows)
        ts = np.fromiter((r[0] for r in rows), np.int64, n)
        stamps = np.datetime_as_string(ts.astype("datetime64[us]"), unit="us").tolist()
        raw = np.frombuffer(self.rng.bytes(16 * n), np.uint8).reshape(n, 16).copy()
        raw[:, 6] = raw[:, 6] & 0x0F | 0x40  # uuid4: version and variant bits
        raw[:, 8] = raw[:, 8] & 0x3F | 0x80
        ids = raw.tobytes().hex()
        lines = [
            f'{{"event_id":"{ids[32 * k:32 * k + 32]}","ts":"{stamps[k]}Z",{body}'
            for k, (_, body) in enumerate(rows)
        ]
        all_ts = np.concatenate([self._pending_ts, ts])
        all_lines = self._pending_rows + lines
        order = np.argsort(all_ts, kind="stable")
        all_ts = all_ts[order]
        hour = all_ts // HOUR_US
        cut = len(all_ts) if keep_from is None else int(np.searchsorted(hour, keep_from))
        edges = np.flatnonzero(np.diff(hour[:cut])) + 1
        for a, b in zip(np.r_[0, edges].tolist(), np.r_[edges, cut].tolist(), strict=True):
            if a == b:
                continue
            self._seq += 1
            last = EPOCH + timedelta(microseconds=int(all_ts[b - 1]))
            write_delivery(self.directory, (all_lines[j] for j in order[a:b].tolist()),
                           delivered_at=last, source=self.source, seq=self._seq, fsync=False,
                           encoded=True)
            self.files += 1
            self.events += b - a
        self._pending_ts = all_ts[cut:]
        self._pending_rows = [all_lines[j] for j in order[cut:].tolist()]

    def finish(self) -> None:
        """Browse the hours after the last order and deliver everything still pending."""
        rows: list[tuple[int, str]] = []
        self._browse(rows, len(self.hours))
        self._emit(rows, keep_from=None)
