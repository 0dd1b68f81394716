"""Where the app tier's cache keeps its entries: this process's memory, or Redis.

Both stores keep entries in *namespaces* with a generation: invalidating a namespace bumps
its generation, and every entry filled under an older one is dead at once (AWS's
"versioned keys": nothing is deleted by pattern, old entries age out by TTL or LRU). A
fill names the generation it read before going to the database and is dropped if the
namespace was bumped meanwhile, so a reader that loaded the old price cannot put it back
after the writer's invalidation (the cache-aside race).

:class:`RedisStore` does each step in one round trip (a Lua script reads the generation
and the entry together; a fill compares and writes atomically). The entries of one
generation live in one Redis hash whose TTL starts with its first fill. Its keys assume a
non-clustered Redis (ElastiCache "cluster mode disabled"): the scripts read the epoch and
generation keys beside the hash they touch.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

# A store that does not answer within these is treated as down (the app then reads the
# database): a cache is only worth asking if it answers much faster than the database.
REDIS_CONNECT_TIMEOUT_SECONDS = 0.25
REDIS_TIMEOUT_SECONDS = 0.5
PREFIX = "tierlake:cache:"


class StoreDownError(Exception):
    """The store did not answer (Redis down or unreachable)."""


class Store(Protocol):
    """What :class:`~tierlake.app.cache.Cache` needs of a store."""

    shared: bool  # seen by every app instance (Redis) or this process only

    def get(self, ns: str, key: str) -> tuple[str, bytes | None]:
        """The namespace's current generation and the entry's value, None on a miss."""

    def put(self, ns: str, key: str, generation: str, value: bytes, ttl: float) -> bool:
        """Keep ``value`` if ``ns`` is still at ``generation``; whether it was kept."""

    def bump(self, namespaces: Iterable[str]) -> None:
        """Invalidate every entry of these namespaces."""

    def new_epoch(self) -> None:
        """Invalidate every entry of every namespace."""

    def lock(self, ns: str, key: str, ms: int) -> bool:
        """Take the fill lock of one key for ``ms`` (stampede protection); whether taken."""

    def unlock(self, ns: str, key: str) -> None: ...

    def ping(self) -> None: ...

    def evictions(self) -> int: ...

    def size(self) -> int | None: ...

    def close(self) -> None: ...


class LocalStore:
    """A bounded LRU with a TTL per entry, in this process (thread-safe).

    ``cachetools`` is not installed here; an ``OrderedDict`` under one lock does it (a
    lookup is a dictionary get and a ``move_to_end``).
    """

    shared = False

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # (ns, key) -> (generation, monotonic expiry, value)
        self._entries: OrderedDict[tuple[str, str], tuple[str, float, bytes]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._epoch = 0
        self._evictions = 0

    def _generation(self, ns: str) -> str:
        return f"{self._epoch}.{self._generations.get(ns, 0)}"

    def get(self, ns: str, key: str) -> tuple[str, bytes | None]:
        with self._lock:
            generation = self._generation(ns)
            entry = self._entries.get((ns, key))
            if entry is None:
                return generation, None
            if entry[0] != generation or entry[1] <= time.monotonic():
                del self._entries[(ns, key)]  # invalidated or expired: not an eviction
                return generation, None
            self._entries.move_to_end((ns, key))
            return generation, entry[2]

    def put(self, ns: str, key: str, generation: str, value: bytes, ttl: float) -> bool:
        with self._lock:
            if self._generation(ns) != generation:
                return False
            self._entries[(ns, key)] = (generation, time.monotonic() + ttl, value)
            self._entries.move_to_end((ns, key))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._evictions += 1
            return True

    def bump(self, namespaces: Iterable[str]) -> None:
        with self._lock:
            for ns in namespaces:
                self._generations[ns] = self._generations.get(ns, 0) + 1

    def new_epoch(self) -> None:
        with self._lock:
            self._epoch += 1

    def lock(self, ns: str, key: str, ms: int) -> bool:
        return True  # one process: the in-process single flight is the whole protection

    def unlock(self, ns: str, key: str) -> None:
        return None

    def ping(self) -> None:
        return None

    def evictions(self) -> int:
        return self._evictions

    def size(self) -> int | None:
        return len(self._entries)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


# KEYS: the epoch and the namespace's generation; ARGV: the hash prefix and the field.
_GET = """
local v = (redis.call('GET', KEYS[1]) or '0') .. '.' .. (redis.call('GET', KEYS[2]) or '0')
return {v, redis.call('HGET', ARGV[1] .. v, ARGV[2])}
"""
# ARGV: the hash prefix, the field, the generation read before loading, value, TTL in ms.
_PUT = """
local v = (redis.call('GET', KEYS[1]) or '0') .. '.' .. (redis.call('GET', KEYS[2]) or '0')
if v ~= ARGV[3] then return 0 end
local h = ARGV[1] .. v
redis.call('HSET', h, ARGV[2], ARGV[4])
if redis.call('PTTL', h) < 0 then redis.call('PEXPIRE', h, ARGV[5]) end
return 1
"""


class RedisStore:
    """Entries in Redis, shared by every app instance (ElastiCache's role).

    Generations are Redis counters (``INCR``), so an invalidation made by one instance is
    seen by all at their next lookup. The *epoch* is bumped when this instance comes back
    after Redis failed while it had invalidations to send: entries written before the
    failure may have missed them, and the new epoch retires all of them at once.
    """

    shared = True

    def __init__(self, url: str) -> None:
        # One immediate retry on a fresh connection (a pooled one dies when Redis restarts),
        # no backoff: a Redis that is down must cost this request milliseconds, not seconds.
        self.client: Any = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1), decode_responses=False)
        self._get = self.client.register_script(_GET)
        self._put = self.client.register_script(_PUT)
        self._epoch = PREFIX + "epoch"

    @staticmethod
    def _gen_key(ns: str) -> str:
        return f"{PREFIX}gen:{ns}"

    @staticmethod
    def _hash_prefix(ns: str) -> str:
        return f"{PREFIX}{ns}:"

    def get(self, ns: str, key: str) -> tuple[str, bytes | None]:
        try:
            generation, value = self._get(keys=[self._epoch, self._gen_key(ns)],
                                          args=[self._hash_prefix(ns), key])
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc
        return generation.decode(), value

    def put(self, ns: str, key: str, generation: str, value: bytes, ttl: float) -> bool:
        try:
            return bool(self._put(keys=[self._epoch, self._gen_key(ns)],
                                  args=[self._hash_prefix(ns), key, generation, value,
                                        max(1, int(ttl * 1000))]))
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def bump(self, namespaces: Iterable[str]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for ns in namespaces:
                    pipe.incr(self._gen_key(ns))
                pipe.execute()
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def new_epoch(self) -> None:
        try:
            self.client.incr(self._epoch)
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def lock(self, ns: str, key: str, ms: int) -> bool:
        try:
            return bool(self.client.set(f"{PREFIX}lock:{ns}:{key}", b"1", nx=True, px=ms))
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def unlock(self, ns: str, key: str) -> None:
        try:
            self.client.delete(f"{PREFIX}lock:{ns}:{key}")
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def ping(self) -> None:
        try:
            self.client.ping()
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def evictions(self) -> int:
        """Redis's own count (``INFO stats`` ``evicted_keys``, ElastiCache's Evictions)."""
        try:
            return int(self.client.info("stats").get("evicted_keys", 0))
        except RedisError as exc:
            raise StoreDownError(str(exc)) from exc

    def size(self) -> int | None:
        return None  # Redis holds other things too (the login limiter's counters)

    def close(self) -> None:
        self.client.close()
