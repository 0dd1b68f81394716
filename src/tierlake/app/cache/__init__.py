"""The app tier's cache-aside layer (ElastiCache's role in the seed design).

Cache-aside is what AWS calls *lazy loading*: a request looks in the cache first; on a
miss it reads the database and fills the cache with a TTL; a write goes to the database
and then invalidates what it changed (AWS, "Caching strategies for Memcached / Valkey and
Redis OSS": https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Strategies.html, lazy
loading plus TTL). What is cached, by namespace:

* ``catalogue``: the category list, catalogue and category pages (search results are not
  cached: a long tail of queries with few repeats), products looked up by slug;
* ``product:<id>``: one product's detail, by id (the store front's product page);
* ``sessions``: bearer token -> customer (the lookup every authenticated request makes).

Invalidation runs after the write's commit, never before (a reader could otherwise fill
the old value back in between): admin product, price and stock changes and a new category
invalidate ``catalogue`` and the product's namespace; a checkout does the same for every
product it took stock of; log-out and account deletion invalidate ``sessions``. Checkout
never trusts the cache: it takes stock with a conditional UPDATE in the database, so a
stale "in stock" on a page can never sell what is not there.

**Modes.** Without ``cache_url`` each app instance has its own bounded LRU
(:class:`~tierlake.app.cache.stores.LocalStore`): an invalidation reaches only the
instance that made the write, so other instances may show the old answer until their
entries expire (``cache.local_ttl_seconds``, 5 s by default). With
``TIERLAKE_CACHE_URL=redis://...`` every instance shares one Redis
(:class:`~tierlake.app.cache.stores.RedisStore`) and an invalidation is seen by all at
their next request.

**Stampedes.** Concurrent misses on one key in one process wait for the first one's
database read (single flight). In Redis mode the first instance to miss also takes a short
lock (``SET NX PX``, ``cache.lock_ms``); the other instances wait for its fill instead of
all reading the database, and read it themselves only if the lock lapses.

**Redis down.** A failed Redis call is logged once (``cache.redis_down``), the request is
served from the database, and Redis is left alone for ``cache.retry_seconds`` before it is
tried again (``cache.redis_recovered`` when it answers). ``/ready`` stays ready and says
``degraded (redis down)``. Invalidations that could not be sent retire every older entry
(a new epoch) once Redis answers again.

**Metrics** (``/metrics`` of the app tier, Prometheus), named after ElastiCache's
CloudWatch metrics (CacheHits, CacheMisses, CacheHitRate, Evictions:
https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheMetrics.Redis.html) but seen
from the app: ``tierlake_cache_hits_total`` and ``tierlake_cache_misses_total`` by
``cache`` (catalogue, product, session), ``tierlake_cache_hit_rate`` (percent, since the
process started), ``tierlake_cache_evictions_total`` (the LRU's, or Redis's
``evicted_keys``), ``tierlake_cache_errors_total``, ``tierlake_cache_up`` and the
histogram ``tierlake_cache_latency_seconds`` by ``op`` (``get``: a cache lookup, ``load``:
the database read of a miss, ``invalidate``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from tierlake.app.cache.stores import LocalStore, RedisStore, Store, StoreDownError
from tierlake.config import CacheConfig, Settings

log = structlog.get_logger(__name__)

Family = Literal["catalogue", "product", "session"]
FAMILIES: tuple[Family, ...] = ("catalogue", "product", "session")
CATALOGUE = "catalogue"
SESSIONS = "sessions"
_POLL_SECONDS = 0.01  # how often an instance waiting on another's fill looks again


def product_ns(product_id: int) -> str:
    return f"product:{product_id}"


class Cache:
    """Cache-aside over a :class:`Store` (``None``: off, every lookup reads the database).

    Lookups never raise because of the store: a store that fails is skipped and the value
    loaded from the database. Errors of ``load`` itself (a 404, the database down) reach
    the caller unchanged, and are not cached.
    """

    def __init__(self, store: Store | None, config: CacheConfig | None = None) -> None:
        config = config or CacheConfig()
        self.store = store
        self.ttl = config.ttl_seconds if store is not None and store.shared \
            else config.local_ttl_seconds
        self.session_ttl = min(self.ttl, config.session_ttl_seconds)
        self.lock_ms = config.lock_ms
        self.retry_seconds = config.retry_seconds
        self.mode = "off" if store is None else ("redis" if store.shared else "memory")
        self._flights: dict[tuple[str, str], Future[bytes]] = {}
        self._flights_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._down_until = 0.0
        self._down_since: float | None = None
        self._missed_invalidations = False
        self.hits = dict.fromkeys(FAMILIES, 0)
        self.misses = dict.fromkeys(FAMILIES, 0)
        self.errors = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "tierlake_cache_latency_seconds", "Time of cache operations (get: a lookup in the "
            "cache; load: the database read of a miss; invalidate).", ["op"],
            registry=self.registry,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.registry.register(_Collector(self))

    # -- state of the store ----------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def _usable(self) -> bool:
        return self.store is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: StoreDownError) -> None:
        with self._state_lock:
            self.errors += 1
            self._down_until = time.monotonic() + self.retry_seconds
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:  # once per incident, not per request
            log.error("cache.redis_down", error=str(exc)[:300], retry_seconds=self.retry_seconds,
                      detail="serving from the database until Redis answers again")

    def _answered(self) -> None:
        if self._down_since is None:
            return
        with self._state_lock:
            since, self._down_since = self._down_since, None
            missed, self._missed_invalidations = self._missed_invalidations, False
        if since is None:
            return
        if missed and self.store is not None:
            try:
                self.store.new_epoch()
            except StoreDownError as exc:
                self._missed_invalidations = True
                self._failed(exc)
                return
        log.warning("cache.redis_recovered", down_seconds=round(time.monotonic() - since, 1),
                    new_epoch=missed)

    def check(self) -> dict[str, object]:
        """For ``/ready``: the cache's state (asks the store now)."""
        if self.store is None:
            return {"ok": True, "status": "off"}
        try:
            self.store.ping()
        except StoreDownError as exc:
            self._failed(exc)
            return {"ok": False, "status": "degraded (redis down)",
                    "detail": "requests are served from the database"}
        self._down_until = 0.0
        self._answered()
        return {"ok": True, "status": f"ok ({self.mode})"}

    # -- lookups -----------------------------------------------------------------------------

    async def aload(self, family: Family, ns: str, key: str, load: Callable[[], bytes]) -> bytes:
        """:meth:`load` for an async endpoint: an in-process hit is answered on the event loop
        (no thread-pool hop); anything else makes one hop for the lookup and the load."""
        store = self.store
        if store is not None and not store.shared:
            started = time.perf_counter()
            _, value = store.get(ns, key)
            if value is not None:
                self.latency.labels("get").observe(time.perf_counter() - started)
                self.hits[family] += 1
                return value
        return await run_in_threadpool(self.load, family, ns, key, load)

    def load(self, family: Family, ns: str, key: str, load: Callable[[], bytes],
             ttl: float | None = None) -> bytes:
        """The cached value of ``key`` in ``ns``, or ``load()``'s (then cached for ``ttl``)."""
        if self.store is None:
            return load()
        flight = (ns, key)
        with self._flights_lock:
            future = self._flights.get(flight)
            leader = future is None
            if future is None:
                future = self._flights[flight] = Future()
        if not leader:
            return future.result()  # the leader's value, or its exception
        try:
            value = self._lookup(family, ns, key, load, self.ttl if ttl is None else ttl)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            with self._flights_lock:
                del self._flights[flight]

    def _lookup(self, family: Family, ns: str, key: str, load: Callable[[], bytes],
                ttl: float) -> bytes:
        store = self.store
        assert store is not None
        generation: str | None = None
        locked = False
        if self._usable():
            try:
                started = time.perf_counter()
                generation, value = store.get(ns, key)
                self.latency.labels("get").observe(time.perf_counter() - started)
                self._answered()
                if value is not None:
                    self.hits[family] += 1
                    return value
                if store.shared and family != "session":  # a token is one client's
                    locked = store.lock(ns, key, self.lock_ms)
                    if not locked:
                        value, locked = self._wait_for_fill(store, ns, key)
                        if value is not None:
                            self.hits[family] += 1
                            return value
            except StoreDownError as exc:
                self._failed(exc)
                generation = None
        self.misses[family] += 1
        started = time.perf_counter()
        try:
            value = load()
            self.latency.labels("load").observe(time.perf_counter() - started)
            if generation is not None and self._usable():
                try:
                    store.put(ns, key, generation, value, ttl)
                except StoreDownError as exc:
                    self._failed(exc)
            return value
        finally:
            if locked and self._usable():
                try:
                    store.unlock(ns, key)
                except StoreDownError as exc:
                    self._failed(exc)

    def _wait_for_fill(self, store: Store, ns: str, key: str) -> tuple[bytes | None, bool]:
        """Another instance holds the fill lock: its value once it is there; or, when the
        lock is free again without a value (that load failed, or the lock lapsed), the lock
        for this instance, which then reads the database itself: (value, locked)."""
        deadline = time.monotonic() + self.lock_ms / 1000
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            _, value = store.get(ns, key)
            if value is not None:
                return value, False
            if store.lock(ns, key, self.lock_ms):
                # The holder may have filled and unlocked between the two calls.
                _, value = store.get(ns, key)
                if value is not None:
                    store.unlock(ns, key)
                    return value, False
                return None, True
        return None, False

    # -- invalidation ------------------------------------------------------------------------

    def invalidate(self, namespaces: Iterable[str]) -> None:
        """Retire every entry of ``namespaces``: call after the write committed. Never raises
        (the write succeeded; a cache that is down is caught up with a new epoch later)."""
        if self.store is None:
            return
        names = list(dict.fromkeys(namespaces))
        if not names:
            return
        if not self._usable():
            self._missed_invalidations = True
            return
        started = time.perf_counter()
        try:
            self.store.bump(names)
        except StoreDownError as exc:
            self._missed_invalidations = True
            self._failed(exc)
            return
        self.latency.labels("invalidate").observe(time.perf_counter() - started)
        self._answered()

    def invalidate_all(self) -> None:
        """Retire every entry (a new epoch): after writes made around the app tier, such as
        ``tierlake seed``. Never raises."""
        if self.store is None:
            return
        try:
            self.store.new_epoch()
        except StoreDownError as exc:
            self._missed_invalidations = True
            self._failed(exc)

    def invalidate_products(self, product_ids: Iterable[int]) -> None:
        """A change to these products' price, stock or details (and so to catalogue pages)."""
        self.invalidate([CATALOGUE, *(product_ns(pid) for pid in product_ids)])

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class _Collector(Collector):
    """Hits, misses, hit rate, evictions, errors and state, read when scraped."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self.cache
        hits = CounterMetricFamily("tierlake_cache_hits", "Lookups answered by the cache "
                                   "(ElastiCache: CacheHits).", labels=["cache"])
        misses = CounterMetricFamily("tierlake_cache_misses", "Lookups that read the database "
                                     "(ElastiCache: CacheMisses).", labels=["cache"])
        rate = GaugeMetricFamily("tierlake_cache_hit_rate", "Hits / (hits + misses), percent, "
                                 "since the process started (ElastiCache: CacheHitRate).",
                                 labels=["cache"])
        for family in FAMILIES:
            h, m = cache.hits[family], cache.misses[family]
            hits.add_metric([family], h)
            misses.add_metric([family], m)
            rate.add_metric([family], 100.0 * h / (h + m) if h + m else 0.0)
        yield hits
        yield misses
        yield rate
        up = GaugeMetricFamily("tierlake_cache_up", "1 while the cache's store answers, 0 when "
                               "it is off or requests are served from the database (degraded).",
                               labels=["mode"])
        up.add_metric([cache.mode], 0.0 if cache.store is None or cache.degraded else 1.0)
        yield up
        yield CounterMetricFamily("tierlake_cache_errors", "Calls to the store that failed.",
                                  value=cache.errors)
        evictions = 0
        if cache.store is not None and cache._usable():
            try:
                evictions = cache.store.evictions()
            except StoreDownError as exc:
                cache._failed(exc)
        yield CounterMetricFamily("tierlake_cache_evictions", "Entries evicted for room (the "
                                  "LRU's, or Redis's evicted_keys; ElastiCache: Evictions).",
                                  value=evictions)
        if cache.store is not None and (size := cache.store.size()) is not None:
            yield GaugeMetricFamily("tierlake_cache_entries", "Entries in this instance's "
                                    "cache (ElastiCache: CurrItems).", value=size)


def cache_for(settings: Settings) -> Cache:
    """The cache ``settings`` ask for: off, in this process, or in Redis (``cache_url``)."""
    config = settings.cache
    if not config.enabled:
        return Cache(None, config)
    if settings.cache_url:
        return Cache(RedisStore(settings.cache_url), config)
    return Cache(LocalStore(config.max_entries), config)


__all__ = ["CATALOGUE", "SESSIONS", "Cache", "LocalStore", "RedisStore", "StoreDownError",
           "cache_for", "product_ns"]
