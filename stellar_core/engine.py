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

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.clock import Clock, HybridLogicalClock, SystemClock
from stellar_core.embeddings import CachedEmbedder, Embedder, embedder_from_settings
from stellar_core.errors import ConfigurationError
from stellar_core.models import Principal
from stellar_core.scoring import ZonePolicy
from stellar_core.settings import Settings
from stellar_core.store.cache import NoCache, RedisCache
from stellar_core.store.database import Database
from stellar_core.store.records import VERSION
from stellar_core.store.schema import meta
from stellar_core.store.vectors import VectorIndexes
from stellar_core.upkeep import RecallLog, Upkeep
from stellar_core.validation import Draft
from stellar_core.writes import Transaction

TEXT_UPKEEP_SECONDS = 0.5  # per upkeep round, so recall statistics are not held up behind it


@dataclass(frozen=True)
class Reading:
    """A read admitted through the gate: one consistent snapshot of the database."""

    conn: sa.Connection
    namespace: str
    principal: Principal


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
        self._recalls = RecallLog(self.db, on_flush=self._recalled)
        self._purged = threading.Event()  # set after a purge: the write-ahead log is to be emptied
        rounds: list[Callable[[], object]] = [self._recalls.flush, self._index_upkeep, self._checkpoint]
        self._upkeep = Upkeep(settings.stats_flush_seconds, rounds)
        if background:
            self._upkeep.start()

    # --- the gate ----------------------------------------------------------------------------
    def scope(self, namespace: str | None, principal: str | Principal | None) -> tuple[str, Principal]:
        """The namespace and principal a call acts as: those given (checked), else the defaults."""
        ns = self.namespace if namespace is None else check.namespace(namespace)
        return ns, check.principal(principal, self.principal)

    def _admit(self, action: str, namespace: str, principal: Principal) -> None:
        """Where every action passes before it touches the database. Every principal may do
        everything in every namespace, for now; access control will decide here."""

    @contextmanager
    def reading(
        self, action: str, namespace: str | None = None, principal: str | Principal | None = None
    ) -> Iterator[Reading]:
        """A read (``action``: what it is, as access control will name it) in one snapshot."""
        ns, who = self.scope(namespace, principal)
        self._admit(action, ns, who)
        with self.db.read() as conn:
            yield Reading(conn, ns, who)

    @contextmanager
    def writing(
        self, action: str, namespace: str | None = None, principal: str | Principal | None = None
    ) -> Iterator[Transaction]:
        """A unit of work: everything written through the yielded ``Transaction`` commits
        together or not at all. After the commit, cached copies of what it touched are dropped
        (no reader can then refill an old one)."""
        ns, who = self.scope(namespace, principal)
        self._admit(action, ns, who)
        with self.db.write() as conn:
            tx = Transaction(conn, self.db.dialect, ns, who, self.clock.now(), self._hlc.tick, self.settings,
                             self._policy)  # fmt: skip
            yield tx
        if tx.reshaped:
            self.cache.invalidate_namespace(ns)
        elif tx.touched:
            self.cache.invalidate(ns, tx.touched)
        if tx.added:
            self.db.added(tx.added)
        if tx.purged:
            self._purged.set()

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
