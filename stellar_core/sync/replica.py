"""This database as a replica (``mem.sync``): publish its changes, apply the others', report.

- ``publish``: the outbox (change log rows still ``pending``) to the namespaces' streams, with
  each stored or re-written memory's vector; the rows are marked published after Redis took
  them, so a crash in between publishes them again (at least once; applying is idempotent).
- ``pull``: a batch from the streams of the namespaces the principal may read, through this
  replica's consumer group; applied in one transaction per namespace by the CRDT merge
  (``merge.py``), acknowledged after the commit. Entries a dead consumer left unacknowledged
  are taken over; a replica behind the streams' trim point bootstraps from a snapshot.
- ``start`` / ``stop``: both in background threads (agents without the sync flow).
- ``status``, ``conflicts``, ``resolve``, ``held``, ``subscribe``, ``bootstrap``, ``trim``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.errors import (
    BadEvent,
    ConfigurationError,
    EncryptionError,
    PermanentError,
    SyncError,
    SyncUnavailable,
    ValidationError,
)
from stellar_core.models import ChangeEvent, Conflict, Memory, Op, SyncStatus, Who
from stellar_core.security.crypto import PREFIX
from stellar_core.store.database import url_for
from stellar_core.store.records import REGISTERS, m
from stellar_core.store.schema import changes, conflicts, memory_vectors, sync_held
from stellar_core.sync.merge import Applied, Merge, Prepared
from stellar_core.sync.streams import Entry, Streams, entry_ms
from stellar_core.sync.wire import Envelope, decode, encode

if TYPE_CHECKING:
    from stellar_core.engine import Engine

log = logging.getLogger(__name__)
c = changes.c
TRIM_SECONDS = 60.0  # how often a background consumer trims the streams
CHECK_SECONDS = 5.0  # how often a consumer looks for dead consumers' entries and the trim point


class Sync:
    """Sync of one open memory with the other replicas (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = engine.settings
        self.settings = s
        self.replica: str = engine.replica
        self.consumer = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(2)}"
        self._secret = s.sync_secret.get_secret_value().encode() if s.sync_secret else None
        self._streams: Streams | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._committed = threading.Event()  # a write committed here: the publisher wakes
        self._unhook: Callable[[], None] = lambda: None
        self._publishing = threading.Lock()
        self._named: tuple[float, list[str]] = (-CHECK_SECONDS, [])
        # namespace -> when its group, its trim point and dead consumers were last looked at
        self._checked: dict[str, float] = {}
        self._trimmed = time.monotonic()
        self._subscriptions: list[Subscription] = []
        self.failure: PermanentError | None = None  # what stopped the background sync

    @property
    def configured(self) -> bool:
        return self.settings.sync_url is not None

    @property
    def streams(self) -> Streams:
        if self._streams is None:
            if self.settings.sync_url is None:
                raise ConfigurationError(
                    "sync is not configured: set STELLAR_SYNC_URL (the Redis that carries events)"
                )
            self._streams = Streams(self.settings.sync_url, self.settings.sync_prefix)
        return self._streams

    # --- publishing -------------------------------------------------------------------------
    def publish(self, limit: int = 1000) -> int:
        """Publish up to ``limit`` of this database's changes not published yet; how many."""
        with self._publishing:  # one publisher per process (another process's duplicates are harmless)
            waiting = self.outbox(limit)
            if waiting:
                self.streams.add([(ns, fields) for _, ns, fields in waiting])
                self.published([seq for seq, _, _ in waiting])
            return len(waiting)

    def publish_all(self, batch: int = 1000) -> int:
        """Publish the whole outbox; how many."""
        total = 0
        while True:
            n = self.publish(batch)
            total += n
            if n < batch:  # a short batch: nothing was left
                return total

    def outbox(self, limit: int) -> list[tuple[int, str, dict[str, bytes]]]:
        """(seq, namespace, stream entry) of the oldest changes not published yet."""
        with self.engine.snapshot() as conn:
            q = sa.select(changes).where(c.pending.is_not(None)).order_by(c.seq).limit(limit)
            rows = conn.execute(q).all()
            vectors = self._vectors(conn, rows) if self.settings.sync_vectors else {}
        model = self.engine.embedder.model
        out = []
        for r in rows:
            event = ChangeEvent(0, r.namespace, r.memory_id, Op(r.op), r.agent, r.hlc, r.created_at,
                                dict(r.payload or {}), dict(r.vector_clock or {}))  # fmt: skip
            vec = vectors.get(r.seq)
            env = Envelope(f"{self.replica}:{r.seq}", event, vec, model if vec is not None else None)
            out.append((r.seq, r.namespace, encode(env, self._secret)))
        return out

    def published(self, seqs: Sequence[int]) -> None:
        """Mark changes published (Redis has them)."""
        with self.engine.db.write() as conn:
            for i in range(0, len(seqs), 500):
                conn.execute(changes.update().where(c.seq.in_(seqs[i : i + 500])).values(pending=None))

    def _vectors(self, conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> dict[int, np.ndarray]:
        """Vectors of the memories whose content these events carry, while it is still that
        content (otherwise the receiver embeds the event's content itself)."""
        wanted = {r.memory_id: r for r in rows if "content_hash" in (r.payload or {})}
        if not wanted:
            return {}
        q = (
            sa.select(m.id, m.content_hash, memory_vectors.c.embedding)
            .join(memory_vectors, memory_vectors.c.seq == m.seq)
            .where(m.id.in_(list(wanted)))
        )
        now = {mid: (h, v) for mid, h, v in conn.execute(q)}
        out = {}
        for r in rows:
            found = now.get(r.memory_id)
            if found is not None and found[0] == (r.payload or {}).get("content_hash"):
                out[r.seq] = np.asarray(found[1], dtype=np.float32)
        return out

    # --- consuming --------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """The namespaces this replica follows: those configured, or every one with a stream,
        of which the principal may read."""
        named = self.settings.sync_namespaces or self._streams_namespaces()
        return [ns for ns in named if self.engine.may(self.engine.principal, "sync", ns)]

    def _streams_namespaces(self) -> list[str]:
        """The namespaces with a stream (looked up again every few seconds)."""
        now = time.monotonic()
        if now - self._named[0] >= CHECK_SECONDS:
            self._named = (now, self.streams.namespaces())
        return self._named[1]

    def pull(
        self, namespaces: Sequence[str] | None = None, batch: int | None = None, block_ms: int = 0
    ) -> Applied:
        """Apply one batch of other replicas' events (waiting up to ``block_ms`` for some)."""
        if namespaces is None:
            names = self.namespaces()  # those it may read
        else:
            names = [check.namespace(ns) for ns in namespaces]
            for ns in names:
                self.engine.authorise("sync", ns)
        if not names:  # no stream yet: wait as a read would have, instead of spinning
            self._stop.wait(block_ms / 1000)
            return Applied()
        count = batch or self.settings.sync_batch
        group, streams = self.replica, self.streams
        entries: list[Entry] = []
        idle = int(self.settings.sync_claim_idle_seconds * 1000)
        now = time.monotonic()
        for ns in names:  # now and then: not between a busy stream's batches
            if now - self._checked.get(ns, -CHECK_SECONDS) >= CHECK_SECONDS:
                streams.join(ns, group)
                self._catch_up(ns)
                entries += streams.claim(ns, group, self.consumer, idle, count)
                self._checked[ns] = now
        if not entries:
            entries = streams.read(names, group, self.consumer, count, block_ms)
        done = Applied()
        by_ns: dict[str, list[Entry]] = {}
        for e in entries:
            by_ns.setdefault(e[0], []).append(e)
        for ns, some in by_ns.items():
            done += self.apply(ns, some)
            streams.ack(ns, group, [i for _, i, _ in some])
        return done

    def drain(self, namespaces: Sequence[str] | None = None, batches: int = 100) -> tuple[int, Applied]:
        """Apply batches until the streams hold nothing more for this replica, or ``batches``
        of them; (batches read, what they did)."""
        done, n = Applied(), 0
        while n < batches:
            got = self.pull(namespaces)
            n += 1
            done += got
            if not got.received:
                break
        return n, done

    def apply(self, ns: str, entries: Sequence[Entry]) -> Applied:
        """Apply stream entries of one namespace in one transaction (bad ones are held)."""
        good: list[Envelope] = []
        bad: list[tuple[str, str, str]] = []
        own = 0
        for _, entry_id, fields in entries:
            try:
                env = decode(fields, ns, self._secret)
            except BadEvent as exc:
                body = fields.get(b"e", repr(fields).encode()).decode(errors="replace")
                bad.append((f"bad:{ns}:{entry_id}", body, str(exc)))
                log.warning("sync: held event %s of %s: %s", entry_id, ns, exc)
                continue
            if env.replica != self.replica:
                good.append(env)
            else:  # this database's own changes are here already
                own += 1
        if not good and not bad:
            return Applied(own=own)
        prepared = self._prepare_all(good)
        with self.engine.writing("sync", ns) as tx:
            merge = Merge(tx, self.replica, prepared, self._prepare)
            for origin, body, why in bad:
                merge.refuse(origin, body, why)
            done = merge.run(good)
        for env in good:
            self.engine.observe(env.event.hlc)
        done.own = own
        return done

    def _prepare_all(self, batch: Sequence[Envelope]) -> dict[str, Prepared]:
        """Vectors (and encrypted contents' search words) of the events that bring content,
        made before the transaction: those that came with a vector of this model use it, the
        rest are embedded in one call."""
        out: dict[str, Prepared] = {}
        todo: list[tuple[Envelope, str, str | None]] = []
        for env in batch:
            text = _content(env)
            if text is None:
                continue
            try:
                plain, words = self._open(env, text)
            except EncryptionError:
                continue  # refused when applied, with the reason
            if (
                env.vector is not None
                and env.model == self.engine.embedder.model
                and len(env.vector) == self.engine.embedder.dim
            ):
                out[env.id] = Prepared(env.vector, words)
            else:
                todo.append((env, plain, words))
        if todo:
            vectors = self.engine.embed([plain for _, plain, _ in todo])
            for (env, _, words), vec in zip(todo, vectors, strict=True):
                out[env.id] = Prepared(vec, words)
        return out

    def _prepare(self, env: Envelope) -> Prepared | str:
        """One event's vector, or why it cannot be stored here."""
        text = _content(env)
        if text is None:
            return "the event carries no content"
        try:
            plain, words = self._open(env, text)
        except EncryptionError as exc:
            return str(exc)
        return Prepared(self.engine.embed([plain])[0], words)

    def _open(self, env: Envelope, text: str) -> tuple[str, str | None]:
        """(plaintext, keyed search words) of an event's content; as is if not encrypted."""
        if not text.startswith(PREFIX):
            return text, None
        cipher = self.engine.cipher
        if cipher is None:
            raise EncryptionError("an encrypted memory arrived and this replica has no encryption key")
        plain = cipher.open(text, env.event.namespace, env.event.memory_id)
        return plain, cipher.search_text(env.event.namespace, plain)

    def _catch_up(self, ns: str) -> None:
        """A replica behind the stream's trim point bootstraps from the snapshot database."""
        if not self.streams.behind(ns, self.replica):
            return
        source = self.settings.sync_snapshot_url
        if source is None:
            raise SyncError(
                f"this replica is behind the trim point of namespace {ns!r}'s stream: events it never "
                "applied are gone. Bootstrap it from a snapshot (stellar sync bootstrap --from URL, or "
                "set STELLAR_SYNC_SNAPSHOT_URL to the hub's database)"
            )
        log.warning(
            "sync: replica %s is behind the trim point of %s: bootstrapping from a snapshot", self.replica, ns
        )
        self.bootstrap(ns, source)

    # --- snapshots --------------------------------------------------------------------------
    def bootstrap(self, namespace: str, source: str) -> int:
        """Merge a snapshot of ``namespace`` from the database at ``source`` (another replica,
        such as the hub: a URL, a database file or a data directory) into this one, then read
        the namespace's stream again from its start. Returns the memories in the snapshot.
        Safe to repeat: it is a merge, not a copy."""
        from stellar_core.sync.snapshot import snapshot

        ns = check.namespace(namespace)
        self.engine.authorise("sync", ns)
        count = 0
        for chunk in snapshot(url_for(source), ns, self.settings):
            count += sum(1 for e in chunk if e.event.op in (Op.STORE, Op.IMPORT))
            prepared = self._prepare_all(chunk)
            with self.engine.writing("sync", ns) as tx:
                Merge(tx, self.replica, prepared, self._prepare).run(chunk)
            for env in chunk:
                self.engine.observe(env.event.hlc)
        if self.configured:
            self.streams.join(ns, self.replica)
            self.streams.rewind(ns, self.replica)
        return count

    def trim(self, namespaces: Sequence[str] | None = None) -> int:
        """Trim the streams (see ``Streams.trim``); entries dropped."""
        s, hour = self.settings, 3_600_000
        names = list(namespaces) if namespaces is not None else self.namespaces()
        return sum(
            self.streams.trim(ns, int(s.sync_retention_hours * hour), int(s.sync_max_retention_hours * hour))
            for ns in names
        )

    # --- in the background ------------------------------------------------------------------
    def start(self) -> None:
        """Publish and apply in two background threads until ``stop`` (or ``close``)."""
        if self._threads:
            return
        self.streams  # noqa: B018  (fails now if sync is not configured)
        self._stop.clear()
        self._unhook = self.engine.on_commit(lambda _: self._committed.set())
        self._threads = [
            threading.Thread(target=self._loop, args=(step,), name=f"stellar-sync-{name}", daemon=True)
            for name, step in (("publish", self._publish_step), ("apply", self._pull_step))
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._unhook()
        self._committed.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        if self._streams is not None:
            self.publish_quietly()

    def publish_quietly(self) -> None:
        try:
            self.publish_all()
        except SyncUnavailable as exc:
            log.warning("sync: %s; the changes stay in the outbox", exc)

    def _publish_step(self) -> None:
        self._committed.wait(1.0)
        self._committed.clear()
        while self.publish() and not self._stop.is_set():
            pass

    def _pull_step(self) -> None:
        self.pull(block_ms=min(self.settings.sync_block_ms, 1000))
        if time.monotonic() - self._trimmed >= TRIM_SECONDS:
            self._trimmed = time.monotonic()
            self.trim()

    def _loop(self, step: Callable[[], None]) -> None:
        """Run a step until stopped; Redis gone: wait and try again (nothing is lost). A
        permanent error (behind the trim point with no snapshot to bootstrap from) ends the
        loop and stays in ``failure`` for whoever watches it."""
        quiet = 0.5
        while not self._stop.is_set():
            try:
                step()
                quiet = 0.5
            except PermanentError as exc:
                log.error("sync: %s: stopped", exc)
                self.failure = exc
                return
            except SyncUnavailable as exc:
                log.warning("sync: %s; retrying in %.0f s", exc, quiet)
                self._stop.wait(quiet)
                quiet = min(quiet * 2, 10.0)
            except Exception:
                log.exception("sync: step failed; retrying")
                self._stop.wait(quiet)
                quiet = min(quiet * 2, 10.0)

    # --- what an operator looks at ----------------------------------------------------------
    def status(self, namespace: str | None = None, *, principal: Who = None) -> list[SyncStatus]:
        """``memory_sync_status``: per namespace this replica follows (or ``namespace``)."""
        who = check.principal(principal, self.engine.principal)
        connected = self.configured and self.streams.ping()
        if namespace is not None:
            names = [check.namespace(namespace)]
        else:
            names = self.namespaces() if connected else self._local_namespaces()
            names = [ns for ns in names if self.engine.may(who, "sync", ns)]
        out = []
        for ns in names:
            self.engine.authorise("sync", ns, who)
            out.append(self._status(ns, connected))
        return out

    def _status(self, ns: str, connected: bool) -> SyncStatus:
        now_ms = self.engine.clock.now() * 1000
        with self.engine.snapshot() as conn:
            unpublished = conn.execute(
                sa.select(sa.func.count()).where(c.pending.is_not(None), c.namespace == ns)
            ).scalar_one()
            own = (c.namespace == ns) & c.origin.is_(None) & c.pending.is_(None) & (c.op != Op.PURGE.value)
            published = conn.execute(
                sa.select(c.created_at).where(own).order_by(c.seq.desc()).limit(1)
            ).scalar()
            theirs = (c.namespace == ns) & c.origin.is_not(None)
            applied = conn.execute(
                sa.select(c.created_at).where(theirs).order_by(c.seq.desc()).limit(1)
            ).scalar()
            held = conn.execute(sa.select(sa.func.count()).where(sync_held.c.namespace == ns)).scalar_one()
            k = conflicts.c
            open_ = conn.execute(
                sa.select(sa.func.count()).where(k.namespace == ns, k.resolved_at.is_(None))
            ).scalar_one()
        info: dict[str, Any] = {"length": 0, "lag": 0, "pending": 0, "consumers": 0, "oldest_unapplied": None}
        behind = False
        if connected:
            try:
                idle = int(self.settings.sync_claim_idle_seconds * 1000)
                info = self.streams.group_status(ns, self.replica, idle)
                behind = self.streams.behind(ns, self.replica)
            except SyncUnavailable:
                connected = False
        oldest = info["oldest_unapplied"]
        lag_ms = max(0.0, now_ms - entry_ms(oldest)) if oldest else (0.0 if connected else None)
        return SyncStatus(
            namespace=ns, replica=self.replica, unpublished=int(unpublished), last_published_at=published,
            last_applied_at=applied, stream_length=info["length"], lag_events=info["lag"], lag_ms=lag_ms,
            pending=info["pending"], consumers=info["consumers"], held=int(held), conflicts=int(open_),
            needs_bootstrap=behind, connected=connected,
        )  # fmt: skip

    def _local_namespaces(self) -> list[str]:
        if self.settings.sync_namespaces:
            return list(self.settings.sync_namespaces)
        with self.engine.snapshot() as conn:
            found = conn.execute(sa.select(c.namespace).distinct()).scalars().all()
        return [ns for ns in found if self.engine.may(self.engine.principal, "sync", ns)]

    def held(self, namespace: str | None = None, *, principal: Who = None) -> list[dict[str, Any]]:
        """Events held: waiting for their memory (``awaits``), or refused (bad input, kept
        for inspection) with the reason."""
        with self.engine.reading("sync", namespace, principal) as r:
            h = sync_held.c
            rows = r.conn.execute(
                sa.select(sync_held).where(h.namespace == r.namespace).order_by(h.held_at)
            ).all()
            return [dict(row._mapping) for row in rows]

    def conflicts(
        self, namespace: str | None = None, *, resolved: bool = False, principal: Who = None
    ) -> list[Conflict]:
        """Concurrent edits detected here, open ones (or, ``resolved``, those settled)."""
        with self.engine.reading("sync", namespace, principal) as r:
            k = conflicts.c
            q = sa.select(conflicts).where(k.namespace == r.namespace)
            q = q.where(k.resolved_at.is_not(None) if resolved else k.resolved_at.is_(None))
            rows = r.conn.execute(q.order_by(k.id)).all()
            return [Conflict(**{**row._mapping, "fields": tuple(row.fields)}) for row in rows]

    def resolve(
        self,
        conflict_id: int,
        keep: str | dict[str, Any] = "winner",
        *,
        namespace: str | None = None,
        principal: Who = None,
    ) -> Memory:
        """Settle a conflict: keep the ``"winner"`` (what the merge chose), the ``"loser"``, or
        given values (a hand merge, e.g. ``{"content": "..."}``). Written as an ordinary edit,
        which every replica applies, and which settles the conflict wherever it was seen."""
        ns, who = self.engine.scope(namespace, principal)
        if not self.engine.may(who, "update", ns):  # refused (and audited) before anything is read
            self.engine.authorise("update", ns, who)
        found = {x.id: x for x in self.conflicts(ns, principal=who)}
        if conflict_id not in found:
            raise ValidationError(f"no open conflict {conflict_id} in this namespace")
        x = found[conflict_id]
        if isinstance(keep, str):
            if keep not in ("winner", "loser"):
                raise ValidationError("keep must be 'winner', 'loser' or a mapping of field values")
            values = dict((x.winner if keep == "winner" else x.loser)["values"])
        else:
            values = {k: v for k, v in keep.items() if k in REGISTERS}
            if set(keep) - set(values):
                raise ValidationError(f"cannot resolve fields {sorted(set(keep) - set(values))}")
        content = self._plain(x, values.get("content"))
        given = (values.get(k) for k in ("importance", "pinned", "metadata"))
        cols = check.changes(self.settings.max_content_chars, content, *given)
        tags = check.tags(values["tags"]) if "tags" in values else None
        vector = self.engine.embed([cols["content"]])[0] if "content" in cols else None
        how = f"kept the {keep}" if isinstance(keep, str) else "kept values given by hand"
        with self.engine.writing("update", x.namespace, principal) as tx:
            updated = tx.update(x.memory_id, cols, tags, vector)
            tx.conn.execute(
                conflicts.update()
                .where(conflicts.c.id == conflict_id)
                .values(resolved_at=tx.now, resolution=how)
            )
        return self.engine.opened([updated])[0]

    def _plain(self, x: Conflict, content: Any) -> Any:
        """A conflict keeps an encrypted memory's content sealed, as stored."""
        if isinstance(content, str) and content.startswith(PREFIX) and self.engine.cipher is not None:
            return self.engine.cipher.open(content, x.namespace, x.memory_id)
        return content

    # --- live ---------------------------------------------------------------------------------
    def subscribe(
        self,
        namespace: str | None,
        callback: Callable[[ChangeEvent], None],
        *,
        from_start: bool = False,
        principal: Who = None,
    ) -> Subscription:
        """Call ``callback`` with each change event of the namespace, from any replica, as it
        is published (from now, or ``from_start`` of the stream). ``close()`` the result."""
        ns, who = self.engine.scope(namespace, principal)
        self.engine.authorise("events", ns, who)
        sub = Subscription(self.streams, ns, callback, self._secret, from_start)
        self._subscriptions.append(sub)
        return sub

    def listen(
        self, namespace: str | None = None, *, timeout: float | None = None, principal: Who = None
    ) -> Iterator[ChangeEvent]:
        """The namespace's change events as they come (an iterator; ``timeout``: stop after
        that long without one)."""
        import queue

        q: queue.Queue[ChangeEvent] = queue.Queue(maxsize=10_000)
        sub = self.subscribe(namespace, q.put, principal=principal)
        try:
            while True:
                try:
                    yield q.get(timeout=timeout)
                except queue.Empty:
                    return
        finally:
            sub.close()

    def close(self) -> None:
        self.stop()
        for sub in self._subscriptions:
            sub.close()
        if self._streams is not None:
            self._streams.close()


class Subscription:
    """A thread that hands a namespace's new stream entries to a callback: woken by the
    namespace's pub/sub channel, and reading the stream itself every second in case a
    wake-up was missed (Redis restarted, say)."""

    def __init__(
        self,
        streams: Streams,
        namespace: str,
        callback: Callable[[ChangeEvent], None],
        secret: bytes | None,
        from_start: bool,
    ) -> None:
        self._streams, self._ns, self._callback, self._secret = streams, namespace, callback, secret
        self._last = "0-0" if from_start else streams.newest_id(namespace)
        self._stop = threading.Event()
        self._pubsub: Any = streams.r.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(streams.channel(namespace))
        self._thread = threading.Thread(target=self._run, name=f"stellar-subscribe-{namespace}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._pubsub.get_message(timeout=1.0)  # a wake-up, or a second passed
                for _, entry_id, fields in self._streams.range_after(self._ns, self._last, 1000):
                    self._last = entry_id
                    try:
                        self._callback(decode(fields, self._ns, self._secret).event)
                    except BadEvent as exc:
                        log.warning("subscription: skipped event %s: %s", entry_id, exc)
            except SyncUnavailable as exc:
                log.warning("subscription to %s: %s", self._ns, exc)
                self._stop.wait(1.0)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("subscription to %s: retrying", self._ns)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # Redis gone: nothing to release
            self._pubsub.close()


def _content(env: Envelope) -> str | None:
    e = env.event
    if e.op in (Op.STORE, Op.IMPORT) or (e.op is Op.UPDATE and "content" in e.payload):
        text = e.payload.get("content")
        return text if isinstance(text, str) else None
    return None
