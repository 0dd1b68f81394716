"""Shoppers for Locust: whole store-front visits in realistic proportions.

Runs inside Locust's own process (gevent, monkey-patched), started by ``tierlake load``
(``tierlake.load.runner``); it imports nothing from tierlake, so gevent never reaches
tierlake's own process and the file also runs alone:
``locust -f src/tierlake/load/locustfile.py --host http://127.0.0.1:8000``.

Each Locust user plays one visitor after another (fresh cookies each visit). A visit is
one of four journeys, chosen with these weights, after the shape of the e-commerce funnel
(most visits browse and leave; about a fifth use site search; roughly one in ten puts
something in the cart and most carts are abandoned; a few per cent buy):

* ``browse`` 58%: home, one to three category pages, one to three product pages, leave;
* ``search`` 20%: home, a search for a word seen on the home page, one or two results;
* ``abandon`` 12%: browse to a product, add it to the cart, look at the cart, leave
  (adding asks for an account: the visitor registers first, as a new shopper would);
* ``checkout`` 10%: the same, then the checkout form and an order placed.

Real stores convert 2-3% of visits; 10% here so a short run of a few users still places
orders that the analytics side can see. Think times (1-4 s on a page, 2-6 s between
visits) are scaled by ``--think-scale`` (1.0 is a person; 0.05 is a quick test).

Requests are named by page kind (``/c/[slug]``, ``/p/[slug]``, ``/orders/[id]``) so
Locust's statistics group them. A page without what a shopper needs (no product link, no
CSRF token, a checkout that does not end on an order page) is a failure with a message
saying so; HTTP errors are failures named ``HTTP <status>``.

Options added to Locust's command line: ``--shop-host`` (the ``Host`` header, e.g.
``shop.tierlake.test``, when requests go to a resolved address), ``--think-scale`` and
``--session-seed`` (each user draws its journeys from ``Random(seed + user number)``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
import secrets
import time
from typing import Any

import locust.stats
from locust import HttpUser, events, task
from locust.env import Environment

# tierlake load's live view reads the CSV files every second: flush them as often.
locust.stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1

JOURNEYS = (("browse", 58), ("search", 20), ("abandon", 12), ("checkout", 10))
COUNTRIES = ("US", "DE", "FR", "GB", "NL", "SE", "ES", "IT", "CA", "JP")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Oakdale")
STREETS = ("Main Street", "Harbor Road", "Elm Avenue", "Mill Lane", "Station Road")

_CATEGORY = re.compile(r'href="/c/([^"/?#]+)"')
_PRODUCT = re.compile(r'href="/p/([^"/?#]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PRODUCT_ID = re.compile(r'name="product_id" value="(\d+)"')
_IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')
_ORDER = re.compile(r"^/orders/(\d+)")
_USER_NUMBERS = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--shop-host", default="", include_in_web_ui=False,
                        help="Host header of every request (the shop's DNS name)")
    parser.add_argument("--think-scale", type=float, default=1.0,
                        help="Multiplies every think time (1.0: a person; 0: none)")
    parser.add_argument("--session-seed", type=int, default=1,
                        help="Seed of the journeys' random choices")


@events.quitting.add_listener
def _write_errors(environment: Environment, **_: Any) -> None:
    """Every error as Locust counted it, written at the very end (the failures CSV is
    written once a second and may miss the last one): ``<csv prefix>_errors.json``."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or environment.runner is None:
        return
    errors = [{"method": e.method, "name": e.name, "error": str(e.error),
               "occurrences": e.occurrences} for e in environment.runner.stats.errors.values()]
    with open(f"{prefix}_errors.json", "w") as f:
        json.dump(errors, f)


class JourneyFailed(Exception):
    """A page did not have what the shopper needed; the visit ends (already recorded)."""


class Shopper(HttpUser):
    """One visitor after another, each on one journey (see the module docstring)."""

    def wait_time(self) -> float:
        return self.rnd.uniform(2.0, 6.0) * self.scale

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.number = next(_USER_NUMBERS)
        self.rnd = random.Random((getattr(options, "session_seed", 1) or 0) * 100_003
                                 + self.number)
        self.scale = max(0.0, float(getattr(options, "think_scale", 1.0)))
        shop_host = getattr(options, "shop_host", "")
        if shop_host:
            self.client.headers["Host"] = shop_host
        self.visits = 0

    # -- one visit --------------------------------------------------------------------------

    @task
    def visit(self) -> None:
        self.client.cookies.clear()  # a new visitor: no cookies, no login
        self.visits += 1
        names = [n for n, _ in JOURNEYS]
        journey = self.rnd.choices(names, weights=[w for _, w in JOURNEYS])[0]
        with contextlib.suppress(JourneyFailed):
            getattr(self, f"_{journey}")()

    def _browse(self) -> None:
        home = self._get("/", "/")
        slugs: list[str] = []
        for _ in range(self.rnd.randint(1, 3)):
            page = self._get(f"/c/{self._pick(_CATEGORY, home)}", "/c/[slug]")
            slugs.extend(_PRODUCT.findall(page))
        for _ in range(self.rnd.randint(1, 3)):
            self._get(f"/p/{self._pick_from(slugs, _PRODUCT, home)}", "/p/[slug]")

    def _search(self) -> None:
        home = self._get("/", "/")
        words = [w for slug in _PRODUCT.findall(home) for w in slug.split("-")
                 if w.isalpha() and len(w) > 2]
        if not words:
            raise self._fail("GET", "/", "the home page lists no product to search for")
        results = self._get("/search", "/search?q=[word]", params={"q": self.rnd.choice(words)})
        for _ in range(self.rnd.randint(1, 2)):
            self._get(f"/p/{self._pick(_PRODUCT, results)}", "/p/[slug]")

    def _abandon(self) -> None:
        self._fill_cart()

    def _checkout(self) -> None:
        self._fill_cart()
        form = self._get("/checkout", "/checkout")
        key = _IDEMPOTENCY.search(form)
        if key is None:
            raise self._fail("GET", "/checkout", "the checkout page has no checkout form")
        country = self.rnd.choice(COUNTRIES)
        location = self._post("/checkout", "/checkout", {
            "csrf_token": self._csrf(form, "/checkout"),
            "idempotency_key": key.group(1),
            "name": f"Load Shopper {self.number}",
            "address": f"{self.rnd.randint(1, 999)} {self.rnd.choice(STREETS)}",
            "city": self.rnd.choice(CITIES), "postcode": f"{self.rnd.randint(10000, 99999)}",
            "country": country,
        })
        if not _ORDER.match(location):
            raise self._fail("POST", "/checkout", f"checkout ended on {location}, not an order")
        self._get(location, "/orders/[id]")

    def _fill_cart(self) -> None:
        home = self._get("/", "/")
        listing = self._get(f"/c/{self._pick(_CATEGORY, home)}", "/c/[slug]")
        product = self._get(f"/p/{self._pick(_PRODUCT, listing)}", "/p/[slug]")
        if _PRODUCT_ID.search(product) is None:  # out of stock: another one
            product = self._get(f"/p/{self._pick(_PRODUCT, listing)}", "/p/[slug]")
        found = _PRODUCT_ID.search(product)
        if found is None:
            raise self._fail("GET", "/p/[slug]", "no product with an add-to-cart form")
        self._register()
        added = self._post("/cart/add", "/cart/add", {
            "csrf_token": self._csrf(product, "/p/[slug]"), "product_id": found.group(1),
            "quantity": str(self.rnd.choices((1, 2, 3), weights=(80, 15, 5))[0]),
            "return_to": "/",
        })
        if added != "/cart":
            raise self._fail("POST", "/cart/add", f"adding to the cart ended on {added}")
        self._get("/cart", "/cart")

    def _register(self) -> None:
        page = self._get("/register", "/register")
        email = f"load-{secrets.token_hex(6)}-{self.number}-{self.visits}@example.com"
        self._post("/register", "/register", {
            "csrf_token": self._csrf(page, "/register"), "next": "/",
            "name": f"Load Shopper {self.number}", "email": email,
            "password": f"Tl-{secrets.token_urlsafe(12)}-load",
            "country": self.rnd.choice(COUNTRIES),
        })

    # -- HTTP -------------------------------------------------------------------------------

    def _get(self, path: str, name: str, **kwargs: Any) -> str:
        """GET a page (after the shopper's pause); raises JourneyFailed unless it is a 200."""
        self._think()
        with self.client.get(path, name=name, catch_response=True, allow_redirects=False,
                             **kwargs) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}" if resp.status_code else
                             f"no answer: {resp.error}")
                raise JourneyFailed(name)
            return str(resp.text)

    def _post(self, path: str, name: str, form: dict[str, str]) -> str:
        """POST a form; every form of the store answers 303 See Other: returns the Location."""
        self._think()
        with self.client.post(path, data=form, name=name, catch_response=True,
                              allow_redirects=False) as resp:
            if resp.status_code != 303:
                resp.failure(f"HTTP {resp.status_code}" if resp.status_code else
                             f"no answer: {resp.error}")
                raise JourneyFailed(name)
            return str(resp.headers.get("location", ""))

    def _fail(self, method: str, name: str, message: str) -> JourneyFailed:
        """Record a page that lacked what a shopper needs as a failure of that page kind."""
        self.environment.events.request.fire(
            request_type=method, name=name, response_time=0, response_length=0,
            exception=JourneyFailed(message), context={}, response=None)
        return JourneyFailed(message)

    def _csrf(self, page: str, name: str) -> str:
        found = _CSRF.search(page)
        if found is None:
            raise self._fail("GET", name, "the page has no CSRF token")
        return found.group(1)

    def _pick(self, pattern: re.Pattern[str], page: str) -> str:
        return self._pick_from([], pattern, page)

    def _pick_from(self, seen: list[str], pattern: re.Pattern[str], page: str) -> str:
        choices = seen or pattern.findall(page)
        if not choices:
            raise self._fail("GET", "/", f"no link matching {pattern.pattern} on the page")
        return str(self.rnd.choice(choices))

    def _think(self) -> None:
        if self.scale > 0:
            time.sleep(self.rnd.uniform(1.0, 4.0) * self.scale)

