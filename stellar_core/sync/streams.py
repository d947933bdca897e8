"""The transport: one durable Redis Stream of change events per namespace, read by one
consumer group per replica, plus a pub/sub wake-up per namespace for live listeners.

Keys (``prefix`` is ``sync_prefix``): ``<prefix>:<namespace>`` the stream,
``<prefix>:namespaces`` the set of namespaces with a stream, ``<prefix>:wake:<namespace>``
the channel told the newest entry id after each publish. Every Redis failure becomes
``SyncUnavailable``: what was to be published stays in the outbox, what was to be applied in
the stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from stellar_core.errors import SyncUnavailable

Entry = tuple[str, str, dict[bytes, bytes]]  # (namespace, entry id, fields)


def entry_ms(entry_id: str) -> int:
    """When an entry was added (its id's first part, milliseconds since the epoch)."""
    return int(entry_id.split("-", 1)[0])


def _after(a: str, b: str) -> bool:
    """Whether entry id ``a`` comes after ``b``."""
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


class Streams:
    def __init__(self, url: str, prefix: str, timeout: float = 5.0) -> None:
        self.prefix = prefix
        self.url = url
        # Any: redis-py's own annotations are a union of sync and async results
        self.r: Any = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def key(self, namespace: str) -> str:
        return f"{self.prefix}:{namespace}"

    def channel(self, namespace: str) -> str:
        return f"{self.prefix}:wake:{namespace}"

    @contextmanager
    def _redis(self) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.ResponseError:
            raise
        except redis.exceptions.RedisError as exc:
            raise SyncUnavailable(f"Redis at {_where(self.url)} does not answer: {exc}") from exc

    # --- publishing -------------------------------------------------------------------------
    def add(self, entries: Sequence[tuple[str, dict[str, bytes]]]) -> list[str]:
        """Append (namespace, fields) entries in this order, in one round trip; wake the
        listeners of each namespace. Their ids."""
        with self._redis():
            pipe = self.r.pipeline(transaction=False)
            for ns, fields in entries:
                pipe.xadd(self.key(ns), fields)
            names = sorted({ns for ns, _ in entries})
            if names:
                pipe.sadd(f"{self.prefix}:namespaces", *names)
            ids = [i.decode() for i in pipe.execute()[: len(entries)]]
            last = {ns: i for (ns, _), i in zip(entries, ids, strict=True)}
            pipe = self.r.pipeline(transaction=False)
            for ns, i in last.items():
                pipe.publish(self.channel(ns), i)
            pipe.execute()
            return ids

    def namespaces(self) -> list[str]:
        with self._redis():
            return sorted(x.decode() for x in self.r.smembers(f"{self.prefix}:namespaces"))

    # --- consuming --------------------------------------------------------------------------
    def join(self, namespace: str, group: str) -> None:
        """Make the replica's group (reading from the stream's start) unless it exists."""
        with self._redis():
            try:
                self.r.xgroup_create(self.key(namespace), group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(
        self, namespaces: Sequence[str], group: str, consumer: str, count: int, block_ms: int
    ) -> list[Entry]:
        """Entries for this consumer: first those it read before and has not acknowledged
        (it restarted mid-batch), then new ones (waiting up to ``block_ms`` for some)."""
        with self._redis():
            try:
                out = self._read(namespaces, group, consumer, count, "0", None)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                for ns in namespaces:  # Redis lost the stream (restarted without its file)
                    self.join(ns, group)
                out = []
            if not out:
                out = self._read(namespaces, group, consumer, count, ">", block_ms or None)
            return out

    def _read(
        self, namespaces: Sequence[str], group: str, consumer: str, count: int, at: str, block: int | None
    ) -> list[Entry]:
        streams = {self.key(ns): at for ns in namespaces}
        found = self.r.xreadgroup(group, consumer, streams, count=count, block=block)
        out: list[Entry] = []
        for key, entries in found or []:
            ns = key.decode()[len(self.prefix) + 1 :]
            out += [(ns, i.decode(), fields) for i, fields in entries if fields]  # a trimmed one is empty
        return out

    def claim(self, namespace: str, group: str, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer of the group read ``idle_ms`` ago or more and
        never acknowledged (it died mid-batch)."""
        with self._redis():
            key = self.key(namespace)
            try:
                _, entries, *_ = self.r.xautoclaim(key, group, consumer, idle_ms, "0-0", count=count)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.join(namespace, group)  # Redis lost the stream (restarted without its file)
                return []
            return [(namespace, i.decode(), fields) for i, fields in entries if fields]

    def ack(self, namespace: str, group: str, ids: Sequence[str]) -> None:
        if ids:
            with self._redis(), contextlib.suppress(redis.exceptions.ResponseError):  # NOGROUP: gone
                self.r.xack(self.key(namespace), group, *ids)

    def behind(self, namespace: str, group: str) -> bool:
        """Whether entries the group never read were trimmed away (it must bootstrap)."""
        with self._redis():
            info = self._stream(namespace)
            if info is None:
                return False
            removed = int(info["entries-added"]) - int(info["length"])
            if removed <= 0:
                return False
            g = next((g for g in self._groups(namespace) if _text(g["name"]) == group), None)
            read = None if g is None else g.get("entries-read")
            if read is not None:
                return int(read) < removed
            # Redis cannot count what the group read: behind if it read nothing of what is left
            seen = _text(g["last-delivered-id"]) if g is not None else "0-0"
            return not _after(seen, _text(info.get("recorded-first-entry-id", "0-0")))

    def rewind(self, namespace: str, group: str) -> None:
        """Read what is left of the stream again from its start (after a bootstrap: the
        snapshot stands for what was trimmed)."""
        with self._redis():
            info = self._stream(namespace)
            removed = int(info["entries-added"]) - int(info["length"]) if info else 0
            self.r.xgroup_setid(self.key(namespace), group, "0", entries_read=removed)

    def trim(
        self, namespace: str, retention_ms: int, max_retention_ms: int, now_ms: int | None = None
    ) -> int:
        """Drop entries every group has acknowledged and that are older than the retention,
        and entries older than the longest retention whoever has not. How many."""
        with self._redis():
            now_ms = int(time.time() * 1000) if now_ms is None else now_ms
            floor = f"{now_ms - retention_ms}-0"
            for g in self._groups(namespace):
                name = _text(g["name"])
                if int(g["pending"]):
                    first = self.r.xpending(self.key(namespace), name)["min"]
                    point = _text(first)
                else:
                    point = _text(g["last-delivered-id"])
                floor = point if _after(floor, point) else floor
            hard = f"{now_ms - max_retention_ms}-0"
            floor = hard if _after(hard, floor) else floor
            return int(self.r.xtrim(self.key(namespace), minid=floor, approximate=False))

    # --- status -----------------------------------------------------------------------------
    def group_status(self, namespace: str, group: str, idle_ms: int) -> dict[str, Any]:
        """length, lag (entries not applied: unread plus pending), pending, consumers alive,
        the oldest entry not applied (its id) and the newest entry's id."""
        with self._redis():
            key = self.key(namespace)
            length = int(self.r.xlen(key))
            newest = self.r.xrevrange(key, count=1)
            out: dict[str, Any] = {"length": length, "lag": 0, "pending": 0, "consumers": 0}
            out.update(oldest_unapplied=None, newest=newest[0][0].decode() if newest else None)
            g = next((g for g in self._groups(namespace) if _text(g["name"]) == group), None)
            if g is None:
                out["lag"] = length
                first = self.r.xrange(key, count=1)
                out["oldest_unapplied"] = first[0][0].decode() if first else None
                return out
            pending = int(g["pending"])
            unread = self.r.xrange(key, min="(" + _text(g["last-delivered-id"]), count=1)
            lag = g.get("lag")
            unread_n = (
                int(lag)
                if lag is not None
                else len(self.r.xrange(key, min="(" + _text(g["last-delivered-id"])))
            )
            out.update(lag=unread_n + pending, pending=pending)
            if pending:
                out["oldest_unapplied"] = _text(self.r.xpending(key, group)["min"])
            elif unread:
                out["oldest_unapplied"] = unread[0][0].decode()
            consumers = self.r.xinfo_consumers(key, group)
            out["consumers"] = sum(1 for c in consumers if int(c.get("inactive", c["idle"])) < idle_ms)
            return out

    def range_after(self, namespace: str, after: str, count: int) -> list[Entry]:
        """Entries after ``after`` (a subscription's reading)."""
        with self._redis():
            found = self.r.xrange(self.key(namespace), min="(" + after, count=count)
            return [(namespace, i.decode(), fields) for i, fields in found]

    def newest_id(self, namespace: str) -> str:
        with self._redis():
            found = self.r.xrevrange(self.key(namespace), count=1)
            return found[0][0].decode() if found else "0-0"

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.exceptions.RedisError:
            return False

    def close(self) -> None:
        self.r.close()

    def _stream(self, namespace: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self.r.xinfo_stream(self.key(namespace))
            return info
        except redis.exceptions.ResponseError:  # no such stream yet
            return None

    def _groups(self, namespace: str) -> list[dict[str, Any]]:
        try:
            groups: list[dict[str, Any]] = self.r.xinfo_groups(self.key(namespace))
            return groups
        except redis.exceptions.ResponseError:
            return []


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _where(url: str) -> str:
    """A Redis URL without its password."""
    return url.split("@", 1)[-1]
