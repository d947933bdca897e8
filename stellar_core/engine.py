"""The engine: one open memory, and the one path every read and write takes.

``Engine`` owns the database, its dialect, the clocks, the cache, the settings, the embedder,
the vector indexes and the background upkeep. Whoever reads or writes (the facade, the
connectors, dedup, summaries, export and import, the lifecycle passes, and through them the
flows, the CLI and the dashboard) does it inside ``engine.reading(...)`` or
``engine.writing(...)``. Those two are the gate: the single place where an action is
admitted for a principal in a namespace (``_admit``) and, after a write commits, the cache is
brought up to date. Nothing else opens a database transaction.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.clock import Clock, HybridLogicalClock, SystemClock
from stellar_core.embeddings import CachedEmbedder, Embedder, embedder_from_settings
from stellar_core.errors import ConfigurationError, EncryptionError, PermissionDenied
from stellar_core.models import Memory, Op, Principal
from stellar_core.scoring import ZonePolicy
from stellar_core.search.lexical import query_terms
from stellar_core.security.access import AccessControl, Grant, load_grants
from stellar_core.security.audit import AuditLog
from stellar_core.security.crypto import Cipher, KeyProvider, KeyRing
from stellar_core.settings import Settings
from stellar_core.store import changelog
from stellar_core.store.cache import NoCache, RedisCache
from stellar_core.store.database import Database
from stellar_core.store.records import VERSION
from stellar_core.store.schema import meta
from stellar_core.store.vectors import VectorIndexes
from stellar_core.upkeep import RecallLog, Upkeep
from stellar_core.validation import Draft
from stellar_core.writes import Transaction

TEXT_UPKEEP_SECONDS = 0.5  # per upkeep round, so recall statistics are not held up behind it


@dataclass
class Admission:
    """A call admitted through the gate. ``saw`` tells the audit which memories the caller is
    given."""

    namespace: str
    principal: Principal
    ids: list[str] = field(default_factory=list)

    def saw(self, ids: Iterable[str]) -> None:
        self.ids.extend(ids)


@dataclass
class Reading(Admission):
    """A read admitted through the gate: one consistent snapshot of the database."""

    conn: sa.Connection = field(kw_only=True)


class Engine:
    """One open memory (see the module docstring). ``namespace`` and ``principal`` are the
    defaults for calls that name none."""

    def __init__(
        self,
        settings: Settings,
        *,
        namespace: str | None = None,
        principal: str | Principal | None = None,
        embedder: Embedder | None = None,
        clock: Clock | None = None,
        background: bool = True,
        create: bool = True,
        keys: KeyProvider | None = None,
    ) -> None:
        self.settings = settings
        self.namespace = check.namespace(settings.namespace if namespace is None else namespace)
        self.principal = check.principal(principal, Principal(settings.agent()))
        self.clock: Clock = clock or SystemClock()
        self._hlc = HybridLogicalClock(self.clock)
        self.embedder = CachedEmbedder(
            embedder or embedder_from_settings(settings), settings.query_cache_size
        )
        self.db = Database(settings.sqlalchemy_url(), settings, create=create)
        self._check_model()
        with self.db.read() as conn:  # never stamp below what this database has already seen
            self._hlc.observe(reads.latest_stamp(conn))
        self._indexes: VectorIndexes | None = None
        self.cache: NoCache | RedisCache = (
            RedisCache(settings.redis_url, settings.cache_ttl_seconds, settings.cache_zones,
                       verify=settings.cache_verify, clock=self.clock.now)
            if settings.redis_url
            else NoCache()
        )  # fmt: skip
        self.access = (
            AccessControl(self._grants, settings.admins, settings.grants_refresh_seconds, self.clock.now)
            if settings.access_control
            else None
        )
        self.audit = AuditLog(self.db) if settings.audit_log else None
        ring = keys or KeyRing.from_settings(
            settings.encryption_key_file,
            {k: v.get_secret_value() for k, v in settings.encryption_keys.items()},
            settings.encryption_key.get_secret_value() if settings.encryption_key else None,
            settings.encryption_primary_key,
        )
        self.cipher = Cipher(ring, settings.encryption_strict) if ring is not None else None
        self._commit_hooks: list[Callable[[str], None]] = []  # told each write's namespace (on_commit)
        # With sync on, each flush of recall statistics also logs this replica's counts.
        self._recalls = RecallLog(self.db, self._recalled, self._log_recalls if settings.sync_url else None)
        self._purged = threading.Event()  # set after a purge: the write-ahead log is to be emptied
        rounds: list[Callable[[], object]] = [self._recalls.flush, self._index_upkeep, self._checkpoint]
        if self.audit is not None:
            rounds.append(self.audit.flush)
        self._upkeep = Upkeep(settings.stats_flush_seconds, rounds)
        if background:
            self._upkeep.start()

    # --- the gate ----------------------------------------------------------------------------
    def scope(self, namespace: str | None, principal: str | Principal | None) -> tuple[str, Principal]:
        """The namespace and principal a call acts as: those given (checked), else the defaults."""
        ns = self.namespace if namespace is None else check.namespace(namespace)
        return ns, check.principal(principal, self.principal)

    def _admit(self, action: str, namespace: str, principal: Principal) -> None:
        """Where every action passes before it touches the database: refused (and the refusal
        audited) unless ``principal`` may do it in ``namespace``."""
        if self.access is None:
            return
        try:
            self.access.check(principal.id, action, namespace)
        except PermissionDenied as exc:
            self.record(principal, action, namespace, (), "denied", str(exc))
            raise

    def may(self, principal: Principal, action: str, namespace: str) -> bool:
        """Whether ``principal`` may do ``action`` in ``namespace`` (nothing is audited)."""
        if self.access is None:
            return True
        try:
            self.access.check(principal.id, action, namespace)
        except PermissionDenied:
            return False
        return True

    def record(
        self,
        who: Principal,
        action: str,
        namespace: str | None,
        ids: Iterable[str],
        outcome: str,
        detail: str = "",
    ) -> None:
        """An entry of the audit log (when it is on)."""
        if self.audit is not None:
            self.audit.add(self.clock.now(), who.id, action, namespace, ids, outcome, detail)

    @contextmanager
    def admitted(
        self, action: str, namespace: str | None = None, principal: str | Principal | None = None
    ) -> Iterator[Admission]:
        """``action`` (by the name access control gives it) admitted, its outcome audited."""
        ns, who = self.scope(namespace, principal)
        self._admit(action, ns, who)
        done = Admission(ns, who)
        try:
            yield done
        except Exception as exc:
            self.record(who, action, ns, (), "error", type(exc).__name__)
            raise
        self.record(who, action, ns, done.ids, "allowed")

    @contextmanager
    def reading(
        self, action: str, namespace: str | None = None, principal: str | Principal | None = None
    ) -> Iterator[Reading]:
        """A read admitted (see ``admitted``), in one snapshot."""
        with self.admitted(action, namespace, principal) as a, self.db.read() as conn:
            yield Reading(a.namespace, a.principal, a.ids, conn=conn)  # its ids are the admission's

    def snapshot(self) -> AbstractContextManager[sa.Connection]:
        """A read snapshot for a call admitted already (a cache miss of ``get``)."""
        return self.db.read()

    @contextmanager
    def writing(
        self, action: str, namespace: str | None = None, principal: str | Principal | None = None
    ) -> Iterator[Transaction]:
        """A unit of work: everything written through the yielded ``Transaction`` commits
        together or not at all. After the commit, cached copies of what it touched are dropped
        (no reader can then refill an old one)."""
        ns, who = self.scope(namespace, principal)
        self._admit(action, ns, who)
        try:
            with self.db.write() as conn:
                now, stamp = self.clock.now(), self._hlc.tick
                tx = Transaction(conn, self.db.dialect, ns, who, now, stamp, self.settings, self._policy,
                                 self.cipher)  # fmt: skip
                yield tx
        except Exception as exc:
            self.record(who, action, ns, (), "error", type(exc).__name__)
            raise
        if tx.reshaped:
            self.cache.invalidate_namespace(ns)
        elif tx.touched:
            self.cache.invalidate(ns, tx.touched)
        if tx.added:
            self.db.added(tx.added)
        for hook in tuple(self._commit_hooks):
            hook(ns)
        self.record(who, action, ns, [*tx.stored, *tx.touched], "allowed")
        if tx.purged:
            self._purged.set()

    def on_commit(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(namespace)`` after each write commits (sync's publisher and the event
        stream wake up); returns what removes it. It runs in the writer's thread: it must be
        quick and must not raise."""
        self._commit_hooks.append(hook)

        def remove() -> None:
            if hook in self._commit_hooks:
                self._commit_hooks.remove(hook)

        return remove

    @contextmanager
    def administering(
        self, action: str, target: str, principal: str | Principal | None = None
    ) -> Iterator[sa.Connection]:
        """An administrative action (``grant``, ``keys``, ``audit``, ``rotate``) on ``target``,
        a namespace or a pattern such as ``team-*`` or ``*``: admitted, audited, one transaction."""
        who = check.principal(principal, self.principal)
        self._admit(action, target, who)
        try:
            with self.db.write() as conn:
                yield conn
        except Exception as exc:
            self.record(who, action, target, (), "error", type(exc).__name__)
            raise
        self.record(who, action, target, (), "allowed")

    def authorise(self, action: str, target: str, principal: str | Principal | None = None) -> Principal:
        """Who acts, once admitted to ``action`` on ``target`` (a namespace or a pattern); the
        admission is audited. For calls that do their work outside one transaction."""
        who = check.principal(principal, self.principal)
        self._admit(action, target, who)
        self.record(who, action, target, (), "allowed")
        return who

    def _grants(self) -> list[Grant]:
        with self.db.read() as conn:
            return load_grants(conn)

    # --- what the verbs share ----------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def vectors_for(self, namespace: str, drafts: Sequence[Draft]) -> np.ndarray:
        """Vectors for drafts, reusing any stored for the same content in the namespace.
        (Before the write transaction: embedding must not hold the database.)"""
        if not drafts:
            return np.zeros((0, 0), dtype=np.float32)
        with self.db.read() as conn:
            known = reads.stored_vectors(conn, namespace, (d.content_hash for d in drafts))
        todo = [d.content for d in drafts if d.content_hash not in known]
        fresh = iter(self.embedder.embed(todo)) if todo else iter(())
        return np.stack([known[d.content_hash] if d.content_hash in known else next(fresh) for d in drafts])

    def opened(self, found: Iterable[Memory]) -> list[Memory]:
        """Memories as a caller sees them: an encrypted one's content decrypted (the caller
        was admitted to read it). ``EncryptionError`` names a key that is missing or wrong."""
        out = []
        for x in found:
            if x.encrypted:
                if self.cipher is None:
                    raise EncryptionError(
                        f"memory {x.id} is encrypted with key {x.key_id!r} and no encryption key "
                        "is configured (STELLAR_ENCRYPTION_KEY, _KEYS or _KEY_FILE)"
                    )
                x = _with_content(x, self.cipher.open(x.content, x.namespace, x.id))
            out.append(x)
        return out

    def keyed_terms(self, namespace: str, text: str) -> tuple[str, ...]:
        """A query's words as the full-text index holds them for encrypted memories."""
        return tuple(self.cipher.query_tokens(namespace, query_terms(text))) if self.cipher else ()

    def vectors(self) -> VectorIndexes:
        """The vector search of every namespace (loaded on first use)."""
        if self._indexes is None:
            self._indexes = self.db.dialect.vector_indexes(self.db, self.embedder.dim, self.settings)
        return self._indexes

    def zone_policy(self, namespace: str) -> ZonePolicy:
        with self.db.read() as conn:
            return self._policy(conn, namespace)

    def _policy(self, conn: sa.Connection, namespace: str) -> ZonePolicy:
        return reads.zone_policy(conn, namespace, self.settings)

    def version(self, namespace: str, memory_id: str) -> tuple[Any, ...] | None:
        """What the database holds of a memory's version (cache hits are checked against it);
        None if it cannot tell."""
        try:
            return self.db.peek(VERSION, {"id": memory_id, "ns": namespace})
        except Exception:  # a dropped connection, say: the caller reads the memory whole
            return None

    def counted(self, seqs: Sequence[int], now: float) -> None:
        """Recalls to add to these memories' statistics (written in batches, off the hot path)."""
        self._recalls.add(seqs, now)

    def stamp(self) -> str:
        """A fresh hybrid-logical-clock timestamp of this agent."""
        return self._hlc.tick()

    def observe(self, stamp: str) -> None:
        """Move this agent's clock past a stamp of another (a change it has applied), so its
        next change orders after it whatever its wall clock says."""
        self._hlc.observe(stamp)

    def _log_recalls(self, conn: sa.Connection, seqs: Sequence[int]) -> None:
        """This replica's recall count of each memory (its total minus the other replicas'),
        as change events for sync, in the transaction that wrote the statistics."""
        events = [
            changelog.event((ns, mid), Op.RECALL, self.principal.id, self.stamp(), self.clock.now(),
                            {"replica": self.replica, "count": count, "at": at})
            for ns, mid, count, at in reads.own_recall_counts(conn, seqs)
        ]  # fmt: skip
        changelog.record(conn, self.db.dialect, events)

    # --- upkeep and the object's lifetime ------------------------------------------------------
    def flush(self) -> None:
        """Write batched recall statistics now."""
        self._recalls.flush()

    def warm(self, namespace: str) -> None:
        self.db.dialect.text_index_upkeep(self.db, self.settings.thread_context_weight, None)
        self.vectors().warm(namespace)  # last: nothing evicts the graph after

    def close(self) -> None:
        self._upkeep.stop()
        self._recalls.flush()
        if self.audit is not None:
            self.audit.flush()
        self.cache.close()
        self.db.close()

    def _index_upkeep(self) -> None:
        self.vectors().upkeep()
        self.db.dialect.text_index_upkeep(self.db, self.settings.thread_context_weight, TEXT_UPKEEP_SECONDS)

    def _checkpoint(self) -> None:
        """Fold the write-ahead log into the database; after a purge, empty it too (its old
        frames hold the purged text), until that succeeds."""
        if not self._purged.is_set():
            self.db.checkpoint()
            return
        self._purged.clear()  # a purge committed from now on sets it again
        if self.db.checkpoint(truncate=True):
            self._purged.set()

    def _recalled(self, seqs: list[int]) -> None:
        """Recall statistics were written: cached copies of those memories are out of date."""
        if not self.cache.active or not seqs:
            return
        with self.db.read() as conn:
            by_ns = reads.ids_by_namespace(conn, seqs)
        for ns, ids in by_ns.items():
            self.cache.invalidate(ns, ids)

    def _check_model(self) -> None:
        """Vectors of different models must never mix in one database. The width is kept
        too, so that opening a database (for ``stats``, say) need not load the model."""
        with self.db.write() as conn:
            self.db.dialect.migration_lock(conn)  # processes opening a new database at once queue
            model = reads.meta_value(conn, "embedding_model")
            dim = reads.meta_value(conn, "embedding_dim")
            if model is None:
                conn.execute(meta.insert().values(key="embedding_model", value=self.embedder.model))
            elif model != self.embedder.model:
                raise ConfigurationError(
                    f"this database holds embeddings of {model!r}, not {self.embedder.model!r}; "
                    "open it with the same embedding model"
                )
            if dim is not None:
                self.embedder.known_dim = int(dim)
            self.db.dialect.prepare_vectors(conn, self.embedder)
            if dim is None and self.embedder.known_dim is not None:
                conn.execute(meta.insert().values(key="embedding_dim", value=str(self.embedder.known_dim)))
            replica = reads.meta_value(conn, "replica_id")
            if replica is None:  # this database's name among the replicas it syncs with
                replica = uuid.uuid4().hex
                conn.execute(meta.insert().values(key="replica_id", value=replica))
            self.replica: str = replica


def _with_content(x: Memory, content: str) -> Memory:
    """``replace(x, content=...)`` at a tenth of the cost (no __init__ of 25 fields run again)."""
    y = copy.copy(x)
    object.__setattr__(y, "content", content)
    return y
