"""Read-through cache of memories by id, in Redis, shared by every process of a deployment.

Only memories in the hot zones (Core and Inner by default) are cached: they are the ones
agents come back to, and it bounds the cache to the zones' capacities.

- **Never older than the database.** A hit is returned only if it is the version the
  database holds (``records.version``: one indexed read of a few columns), so nothing that
  happened to Redis, such as a write whose deletion could not reach it and whose process then
  exited, makes a reader see an old version (``cache_verify``; on by default).
- **Invalidated on write.** Every write deletes the keys of what it changed, after its
  commit, from whichever process. A reader that missed fills the key only while it holds
  the key's *lease*, and a write deletes the lease too: a fill that raced a write is dropped.
- **No stampede.** Of the readers that miss at once, the lease holder reads the database;
  the others wait a moment for its value instead of all querying.
- **Redis is optional at run time.** If it is down or goes away, every call works without it
  (logged once); keys whose deletion failed are deleted when Redis answers again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from stellar_core.models import Memory
from stellar_core.store.records import version_of

log = logging.getLogger(__name__)

_FILL = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""

# The cached value, or else the key's lease if nobody holds it: one round trip, and a hit
# writes nothing.
_GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value then
    return {1, value}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {0, 1}
end
return {0, 0}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


Version = Callable[[], "tuple[Any, ...] | None"]  # the live row's version, from the database


class NoCache:
    """The embedded default: every read goes to the database."""

    active = False

    def get(self, namespace: str, memory_id: str, load: Callable[[], Memory], current: Version) -> Memory:
        return load()

    def invalidate(self, namespace: str, memory_ids: Iterable[str]) -> None:
        pass

    def invalidate_namespace(self, namespace: str) -> None:
        pass

    def close(self) -> None:
        pass


class RedisCache:
    """``NoCache``'s interface over Redis (see the module docstring)."""

    active = True

    def __init__(
        self,
        url: str,
        ttl_seconds: float,
        zones: Iterable[str],
        lease_seconds: float = 2.0,
        retry_seconds: float = 1.0,
        verify: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._fill = self._redis.register_script(_FILL)
        self._release = self._redis.register_script(_RELEASE)
        self._get_or_lease_script = self._redis.register_script(_GET_OR_LEASE)
        self._ttl_ms = int(ttl_seconds * 1000)
        self._lease_ms = int(lease_seconds * 1000)
        self._zones = {str(z) for z in zones}
        self._retry = retry_seconds  # Redis is left alone this long after a failure (by ``clock``)
        self._clock = clock
        self._verify = verify
        self._lock = threading.Lock()
        self._down_since: float | None = None  # when Redis last failed; None while it answers
        self._undeleted: set[tuple[str, str]] = set()  # invalidations Redis missed
        self._namespaces_undeleted: set[str] = set()

    # --- reads ----------------------------------------------------------------------------
    def get(self, namespace: str, memory_id: str, load: Callable[[], Memory], current: Version) -> Memory:
        """The memory from Redis if it is the database's version (``current()``), else from
        ``load()`` (the database), filling Redis."""
        key, lease = _key(namespace, memory_id), _key(namespace, memory_id) + ":lease"
        token = uuid.uuid4().hex
        got = self._call(lambda: self._get_or_lease(key, lease, token))
        if got is None:  # Redis unavailable
            return load()
        cached, leased = got
        if cached is None and not leased:  # someone else is loading it: wait briefly for their value
            cached = self._wait_for(key)
        if cached is not None:
            x = Memory.from_dict(json.loads(cached))
            if not self._verify or version_of(x) == current():
                return x
            self._call(lambda: self._redis.delete(key))  # out of date: the next reader fills it anew
            return load()
        try:
            x = load()
        except Exception:
            if leased:  # let the next reader try at once
                self._call(lambda: self._release(keys=[lease], args=[token]))
            raise
        if leased and x.zone.value in self._zones:
            value = json.dumps(x.to_dict())
            self._call(lambda: self._fill(keys=[key, lease], args=[token, value, self._ttl_ms]))
            self._call(lambda: self._redis.sadd(_members(namespace), memory_id))
        elif leased:  # not a hot memory: nothing will be filled, so nobody should wait for it
            self._call(lambda: self._release(keys=[lease], args=[token]))
        return x

    def _get_or_lease(self, key: str, lease: str, token: str) -> tuple[bytes | None, bool]:
        value = self._redis.get(key)  # a plain GET first: a hit is the common case, and cheaper
        if isinstance(value, bytes):
            return value, False
        found, value = self._get_or_lease_script(keys=[key, lease], args=[token, self._lease_ms])
        return (value, False) if found == 1 else (None, value == 1)

    def _wait_for(self, key: str) -> bytes | None:
        """The lease holder's value, polled for up to half a lease."""
        deadline = time.monotonic() + self._lease_ms / 2000
        while time.monotonic() < deadline:
            time.sleep(0.005)
            value = self._call(lambda: self._redis.get(key))
            if value is not None:
                return value  # type: ignore[no-any-return]
        return None

    # --- invalidation (after a write commits) -----------------------------------------------
    def invalidate(self, namespace: str, memory_ids: Iterable[str]) -> None:
        ids = list(memory_ids)
        if not ids:
            return
        keys = [k for i in ids for k in (_key(namespace, i), _key(namespace, i) + ":lease")]
        if self._call(lambda: self._redis.delete(*keys)) is None:
            with self._lock:
                self._undeleted.update((namespace, i) for i in ids)

    def invalidate_namespace(self, namespace: str) -> None:
        """Drop every cached memory of a namespace (a reorbit moved them all)."""
        if self._call(lambda: self._drop_namespace(namespace)) is None:
            with self._lock:
                self._namespaces_undeleted.add(namespace)

    def _drop_namespace(self, namespace: str) -> int:
        ids = [i.decode() if isinstance(i, bytes) else i for i in self._redis.smembers(_members(namespace))]
        keys = [k for i in ids for k in (_key(namespace, i), _key(namespace, i) + ":lease")]
        return int(self._redis.delete(_members(namespace), *keys))

    def close(self) -> None:
        self._redis.close()

    # --- failures -------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None when Redis is unavailable (then skipped for ``retry_seconds``)."""
        with self._lock:
            down = self._down_since
        if down is not None and self._clock() - down < self._retry:
            return None
        try:
            if down is not None:
                self._recover()
            out = fn()
        except self._errors as exc:
            with self._lock:
                if self._down_since is None:
                    log.warning("Redis cache unavailable, continuing without it: %s", exc)
                self._down_since = self._clock()
            return None
        return out

    def _recover(self) -> None:
        """Redis answers again: first delete what it missed while it was away."""
        with self._lock:
            pending, spaces = set(self._undeleted), set(self._namespaces_undeleted)
        for ns in spaces:
            self._drop_namespace(ns)
        keys = [k for ns, i in pending for k in (_key(ns, i), _key(ns, i) + ":lease")]
        if keys:
            self._redis.delete(*keys)
        with self._lock:
            self._undeleted -= pending
            self._namespaces_undeleted -= spaces
            self._down_since = None
        log.warning("Redis cache available again")


def _key(namespace: str, memory_id: str) -> str:
    return f"stellar:m:{json.dumps(namespace)}:{memory_id}"


def _members(namespace: str) -> str:
    return f"stellar:members:{json.dumps(namespace)}"
