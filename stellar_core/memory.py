"""``StellarMemory``: the public API agents call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core import graph, writes
from stellar_core import validation as check
from stellar_core.clock import Clock, SystemClock
from stellar_core.embeddings import CachedEmbedder, Embedder, embedder_from_settings
from stellar_core.errors import ConfigurationError, ValidationError
from stellar_core.housekeeping import RecallLog, Upkeep
from stellar_core.lifecycle import forget_idle
from stellar_core.lifecycle import reorbit as reorbit_pass
from stellar_core.models import (
    ChangeEvent,
    ForgetReport,
    ImportReport,
    Link,
    Memory,
    Principal,
    RecallHit,
    ReorbitReport,
    Stats,
    Zone,
)
from stellar_core.scoring import ZonePolicy
from stellar_core.search.recall import Filters
from stellar_core.search.recall import recall as recall_pass
from stellar_core.search.vector import VectorIndexes
from stellar_core.settings import Settings
from stellar_core.store.cache import NoCache, RedisCache
from stellar_core.store.dialect import in_json_list, json_list, json_texts
from stellar_core.store.engine import Database
from stellar_core.store.records import VERSION, fetch, live, m
from stellar_core.store.schema import changes, memories, memory_vectors, meta, namespace_config
from stellar_core.sync import outbox
from stellar_core.sync.clock import HybridLogicalClock
from stellar_core.validation import Draft

log = logging.getLogger(__name__)

_DB_SUFFIXES = {".db", ".sqlite", ".sqlite3"}
PAGE_MAX = 10_000  # memories() and events() return at most this many at once
TEXT_UPKEEP_SECONDS = 0.5  # per upkeep round, so recall statistics are not held up behind it


class StellarMemory:
    """Shared long-term memory: ``store``, ``recall``, ``get``, ``update``, ``forget``, ``link``.

    ``StellarMemory()`` opens (or creates) the embedded default database in the data
    directory from settings; ``StellarMemory("path/to/dir")``, ``StellarMemory("file.db")`` or
    ``StellarMemory("sqlite:///...")`` choose another; ``create=False`` opens only a database
    that exists. Every call may name a ``namespace`` (a
    hard partition) and a ``principal`` (the acting agent); both default to this instance's.
    """

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        namespace: str | None = None,
        agent: str | Principal | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        clock: Clock | None = None,
        background: bool = True,
        create: bool = True,
    ) -> None:
        s = settings or Settings()
        if location is not None:
            s = s.model_copy(update={"database_url": _url_for(location)})
        self.settings = s
        self.namespace = check.namespace(s.namespace if namespace is None else namespace)
        self.principal = check.principal(agent, Principal(s.agent()))
        self.clock: Clock = clock or SystemClock()
        self._hlc = HybridLogicalClock(self.clock)
        self.embedder = CachedEmbedder(embedder or embedder_from_settings(s), s.query_cache_size)
        self.db = Database(s.sqlalchemy_url(), s, create=create)
        self._check_model()
        with self.db.read() as conn:  # never stamp below what this database has already seen
            self._hlc.observe(conn.execute(sa.select(sa.func.max(changes.c.hlc))).scalar() or "")
        self._indexes: VectorIndexes | None = None
        self._cache: NoCache | RedisCache = (
            RedisCache(s.redis_url, s.cache_ttl_seconds, s.cache_zones, verify=s.cache_verify)
            if s.redis_url
            else NoCache()
        )
        self._recalls = RecallLog(self.db, on_flush=self._recalled)
        upkeep: list[Callable[[], object]] = [self._recalls.flush, self._maintain_indexes, self.db.checkpoint]
        self._upkeep = Upkeep(s.stats_flush_seconds, upkeep)
        if background:
            self._upkeep.start()

    # --- lifecycle of the object ------------------------------------------------------------
    def close(self) -> None:
        """Write pending recall statistics and release the database."""
        self._upkeep.stop()
        self._recalls.flush()
        self._cache.close()
        self.db.close()

    def __enter__(self) -> StellarMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write batched recall statistics now (they are otherwise written within a second)."""
        self._recalls.flush()

    def warm(self, namespace: str | None = None) -> None:
        """Make search fast now rather than later: SQLite loads the namespace's vector index
        and builds its HNSW graph; PostgreSQL adds the vectors still waiting to its graph, reads
        the graph into the server's memory and builds the lists of common terms that its
        full-text search prunes with."""
        self.db.dialect.text_index_upkeep(self.db, self.settings.thread_context_weight, None)
        self._vectors().warm(self.namespace_for(namespace))  # last: nothing evicts the graph after

    # --- writes ----------------------------------------------------------------------------
    def store(
        self,
        content: str,
        *,
        importance: float = 0.5,
        pinned: bool = False,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        source: Any = None,
        thread: str | None = None,
        position: int | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """Store one memory; storing identical content again (same thread) returns the existing one.

        ``thread`` groups memories of one conversation, session or document; ``position``
        orders them (default: after the thread's last memory).
        """
        item = {
            "content": content,
            "importance": importance,
            "pinned": pinned,
            "tags": tags,
            "metadata": metadata,
            "source": source,
            "thread": thread,
            "position": position,
        }
        return self.store_many([item], namespace=namespace, principal=principal)[0]

    def store_many(
        self,
        items: Iterable[str | Mapping[str, Any]],
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[Memory]:
        """Store a batch in one transaction: texts, or mappings of ``store`` keyword arguments."""
        ns, who = self.namespace_for(namespace), self._who(principal)
        limit = self.settings.max_content_chars
        drafts = [check.draft(item, limit) for item in check.items(items)]
        if not drafts:
            return []
        vectors = self._embed_for_store(ns, drafts)
        policy = self.zone_policy(ns)
        for attempt in range(2):
            try:
                with self.db.write() as conn:
                    now = self.clock.now()
                    out, new = writes.from_drafts(
                        conn, ns, who, drafts, policy, self.settings, now, self._hlc.tick
                    )
                    rows = [(out[i], vectors[i]) for i in new]
                    writes.insert(conn, self.db.dialect, who, rows, "store", now, self._window)
                self.db.added(len(rows))
                return out
            except sa.exc.IntegrityError:
                if attempt:  # a concurrent writer stored the same content; pick it up
                    raise
        raise AssertionError("unreachable")

    def update(
        self,
        memory_id: str,
        *,
        content: str | None = None,
        importance: float | None = None,
        pinned: bool | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """Change the given fields of a memory; the rest stays as it is."""
        ns, who = self.namespace_for(namespace), self._who(principal)
        memory_id = check.memory_id(memory_id)
        now = self.clock.now()
        values: dict[str, Any] = {}
        vector = None
        if content is not None:
            values["content"] = check.content(content, self.settings.max_content_chars)
            values["content_hash"] = check.content_hash(content)
            vector = self.embedder.embed([content])[0]
        if importance is not None:
            values["importance"] = check.importance(importance)
        if pinned is not None:
            values["pinned"] = check.flag(pinned, "pinned")
        if metadata is not None:
            values["meta"] = check.metadata(metadata)
        new_tags = check.tags(tags) if tags is not None else None
        with self.db.write() as conn:
            updated = writes.update(
                conn, self.db.dialect, ns, who, memory_id, values, new_tags, vector, self._hlc.tick, now,
                self._window,
            )  # fmt: skip
        self._cache.invalidate(ns, [memory_id])  # after the commit: no reader can refill the old
        return updated

    def forget(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """Forget a memory: it becomes a tombstone, invisible to recall and get, purged later."""
        ns, who = self.namespace_for(namespace), self._who(principal)
        memory_id = check.memory_id(memory_id)
        now = self.clock.now()
        with self.db.write() as conn:
            gone = writes.forget(conn, self.db.dialect, ns, who, memory_id, self._hlc.tick, now, self._window)
        self._cache.invalidate(ns, [memory_id])
        return gone

    def link(
        self,
        source_id: str,
        target_id: str,
        *,
        kind: str = "related",
        weight: float = 1.0,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Link:
        """A directed, typed, weighted edge; linking a pair again with that kind sets the weight."""
        ns, who = self.namespace_for(namespace), self._who(principal)
        source_id, target_id = check.memory_id(source_id), check.memory_id(target_id)
        kind = check.link_kind(kind)
        w, now = check.weight(weight), self.clock.now()
        if source_id == target_id:
            raise ValidationError("a memory cannot link to itself")
        with self.db.write() as conn:
            ends = {x: writes.live_memory(conn, ns, x, lock=True)[1] for x in sorted({source_id, target_id})}
            src = ends[source_id]  # (locked in id order: two links the other way round cannot deadlock)
            link = graph.put(conn, self.db.dialect, ns, Link(source_id, target_id, kind, w, now))
            payload = {"target_id": target_id, "kind": kind, "weight": w}
            event = writes.event(src, "link", who, self._hlc.tick(), src.vector_clock, payload, now)
            outbox.record(conn, self.db.dialect, [event])
        return link

    def configure_zones(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        capacities: Mapping[str, int] | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> ZonePolicy:
        """Give a namespace its own zone thresholds and/or capacities (others keep the defaults)."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        config = check.zone_config(thresholds, capacities)
        try:
            policy = ZonePolicy.from_settings(self.settings, config)
            policy.check()
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"invalid zone configuration: {exc}") from exc
        with self.db.write() as conn:
            ins = self.db.dialect.insert(namespace_config).values(namespace=ns, config=config)
            conn.execute(ins.on_conflict_do_update(index_elements=["namespace"], set_={"config": config}))
        return policy

    def reorbit(
        self,
        *,
        context: str | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> ReorbitReport:
        """Rescore and rezone a namespace, forget idle Cloud memories, purge old tombstones.

        ``context`` (text) adds a similarity-to-context term to every memory's score.
        """
        ns, who = self.namespace_for(namespace), self._who(principal)
        self._recalls.flush()  # scores must see every recall so far
        ctx = None
        if context is not None:
            query = self.embedder.embed([check.content(context, self.settings.max_content_chars)])[0]
            with self.db.read() as conn:
                ctx = self._vectors().get(ns, conn).all_similarities(query)
        policy = self.zone_policy(ns)
        with self.db.write() as conn:
            self.db.dialect.lock_namespaces(conn, [ns], exclusive=True)
            report = reorbit_pass(
                conn,
                self.db.dialect,
                ns,
                policy,
                self.settings,
                self.clock.now(),
                who.id,
                self._hlc.tick,
                ctx,
            )
            self.db.dialect.refresh_statistics(conn)  # the pass reshaped the table
        self._cache.invalidate_namespace(ns)  # scores and zones moved, some were forgotten
        return report

    def forget_idle(
        self, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> ForgetReport:
        """Forget the memories idle in Cloud long enough for their importance, and purge old
        tombstones, with zones as the last reorbit left them (``reorbit`` does this too)."""
        ns, who = self.namespace_for(namespace), self._who(principal)
        started = time.perf_counter()
        self._recalls.flush()  # a memory recalled just now is not idle
        with self.db.write() as conn:
            self.db.dialect.lock_namespaces(conn, [ns], exclusive=True)
            forgotten, purged = forget_idle(
                conn, self.db.dialect, ns, self.settings, self.clock.now(), who.id, self._hlc.tick
            )
        if forgotten:
            self._cache.invalidate_namespace(ns)
        return ForgetReport(ns, forgotten, purged, time.perf_counter() - started)

    # --- reads -----------------------------------------------------------------------------
    def recall(
        self,
        query: str,
        *,
        k: int = 10,
        zones: Iterable[Zone | str] | Zone | str | None = None,
        tags: Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        source_type: str | None = None,
        expand: bool = False,
        count: bool = True,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[RecallHit]:
        """The ``k`` memories most relevant to ``query``, best first.

        Filters: ``zones``, ``tags`` (every one must be present), ``since`` / ``until``
        (creation time, datetime or epoch seconds), ``source_type``. ``expand`` adds linked
        memories of the hits, each scored below the hit that brought it. ``count=False`` is a
        look, not a use (a dashboard, an audit): the hits' recall statistics stay as they are.
        """
        ns = self.namespace_for(namespace)
        self._who(principal)
        text = check.content(query, self.settings.max_content_chars)
        k = check.int_in_range(k, "k", 1000)
        filters = Filters(
            check.zones(zones),
            check.tags(tags),
            check.timestamp(since),
            check.timestamp(until),
            check.source_type(source_type),
        )
        vector = self.embedder.embed([text])[0]
        now = self.clock.now()
        with self.db.read() as conn:
            index = self._vectors().get(ns, conn)
            hits = recall_pass(
                conn, self.db.dialect, index, ns, text, vector, k, filters, bool(expand), self.settings, now,
                side=self.db.side_read if self.db.dialect.parallel_reads else None,
            )  # fmt: skip
        if count:
            self._recalls.add((seq for seq, *_ in hits), now)
        return [RecallHit(x, relevance, via) for _, x, relevance, via in hits]

    def get(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """One live memory by id; ``NotFoundError`` if absent, forgotten or in another namespace."""
        ns = self.namespace_for(namespace)
        self._who(principal)

        memory_id = check.memory_id(memory_id)

        def load() -> Memory:
            with self.db.read() as conn:
                return writes.live_memory(conn, ns, memory_id)[1]

        def current() -> tuple[Any, ...] | None:
            try:
                return self.db.peek(VERSION, {"id": memory_id, "ns": ns})
            except Exception:  # cannot tell (a dropped connection): the memory is read whole
                return None

        return self._cache.get(ns, memory_id, load, current)

    def thread(
        self, thread: str, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> list[Memory]:
        """The live memories of a thread (conversation, session, document) in position order."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        check.thread(thread, None)
        with self.db.read() as conn:
            found = fetch(conn, sa.and_(live(ns), m.thread == thread))
        return sorted(found.values(), key=lambda x: (x.position is None, x.position or 0))

    def links(
        self,
        memory_id: str,
        *,
        direction: str = "both",
        kind: str | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[Link]:
        """Edges from (``out``), to (``in``) or either way (``both``) of a memory."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        if direction not in ("out", "in", "both"):
            raise ValidationError("direction must be 'out', 'in' or 'both'")
        memory_id = check.memory_id(memory_id)
        if kind is not None:
            kind = check.link_kind(kind)
        with self.db.read() as conn:
            writes.live_memory(conn, ns, memory_id)
            return graph.edges(conn, ns, memory_id, direction, kind)

    def stats(self, *, namespace: str | None = None, principal: Principal | str | None = None) -> Stats:
        """Counts, zone sizes and mean score of a namespace."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        self._recalls.flush()
        alive = m.deleted_at.is_(None)
        per_zone = (  # one pass over the namespace for the counts and the score
            sa.select(m.zone, sa.func.count().filter(alive), sa.func.sum(m.score).filter(alive),
                      sa.func.count().filter(~alive))
            .where(m.namespace == ns)
            .group_by(m.zone)
        )  # fmt: skip
        zones, total, forgotten = dict.fromkeys(Zone, 0), 0.0, 0
        with self.db.read() as conn:
            for zone, n_live, score_sum, n_forgotten in conn.execute(per_zone):
                zones[Zone(zone)] = int(n_live)
                total += float(score_sum or 0.0)
                forgotten += int(n_forgotten)
            n_links = graph.count(conn, ns)
            threads = conn.execute(sa.select(sa.func.count(sa.distinct(m.thread))).where(live(ns))).scalar()
        n = sum(zones.values())
        return Stats(ns, n, forgotten, int(n_links or 0), int(threads or 0), zones, total / n if n else 0.0)

    def memories(
        self,
        *,
        zones: Iterable[Zone | str] | None = None,
        limit: int = 100,
        offset: int = 0,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[Memory]:
        """Live memories of the namespace, highest score first (a page of ``limit`` from
        ``offset``), optionally only those in ``zones``."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        limit = check.int_in_range(limit, "limit", PAGE_MAX)
        offset = check.int_in_range(offset, "offset", 2**62, least=0)
        where = live(ns)
        if zones is not None:
            where = sa.and_(where, m.zone.in_([z.value for z in check.zones(zones)]))
        self._recalls.flush()
        with self.db.read() as conn:
            found = fetch(conn, where, order_by=(m.score.desc(), m.seq), limit=limit, offset=offset)
        return list(found.values())

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[ChangeEvent]:
        """The namespace's change log, newest first: at most ``limit`` events with a ``seq``
        above ``after`` (pass the newest seq seen to follow the log)."""
        ns = self.namespace_for(namespace)
        self._who(principal)
        after = check.int_in_range(after, "after", 2**62, least=0)
        limit = check.int_in_range(limit, "limit", PAGE_MAX)
        with self.db.read() as conn:
            return outbox.newest(conn, ns, after, limit)

    def namespaces(self) -> list[str]:
        """Namespaces that hold at least one live memory."""
        with self.db.read() as conn:
            return list(conn.execute(_NAMESPACES).scalars())

    def zone_policy(self, namespace: str | None = None) -> ZonePolicy:
        """The namespace's zone thresholds and capacities."""
        ns = self.namespace_for(namespace)
        with self.db.read() as conn:
            config = conn.execute(
                sa.select(namespace_config.c.config).where(namespace_config.c.namespace == ns)
            ).scalar()
        return ZonePolicy.from_settings(self.settings, config)

    def stamp(self) -> str:
        """A fresh hybrid-logical-clock timestamp of this agent (orders changes across agents)."""
        return self._hlc.tick()

    @property
    def _window(self) -> int:
        return self.settings.thread_context_window

    # --- internals -------------------------------------------------------------------------
    def namespace_for(self, namespace: str | None) -> str:
        """The namespace a call acts on: the one given (checked), else this instance's."""
        return self.namespace if namespace is None else check.namespace(namespace)

    def _who(self, principal: Principal | str | None) -> Principal:
        return check.principal(principal, self.principal)

    def _vectors(self) -> VectorIndexes:
        if self._indexes is None:
            self._indexes = self.db.dialect.vector_indexes(self.db, self.embedder.dim, self.settings)
        return self._indexes

    def _recalled(self, seqs: list[int]) -> None:
        """Recall statistics were written: cached copies of those memories are out of date."""
        if not self._cache.active or not seqs:
            return
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(m.namespace, m.id).where(in_json_list(m.seq, "seqs")), {"seqs": json_list(seqs)}
            )
            by_ns: dict[str, list[str]] = {}
            for ns, mid in rows:
                by_ns.setdefault(ns, []).append(mid)
        for ns, ids in by_ns.items():
            self._cache.invalidate(ns, ids)

    def _maintain_indexes(self) -> None:
        self._vectors().maintain()
        self.db.dialect.text_index_upkeep(self.db, self.settings.thread_context_weight, TEXT_UPKEEP_SECONDS)

    def _check_model(self) -> None:
        """Vectors of different models must never mix in one database. The width is kept
        too, so that opening a database (for ``stats``, say) need not load the model."""
        with self.db.write() as conn:
            self.db.dialect.migration_lock(conn)  # processes opening a new database at once queue
            keys = ("embedding_model", "embedding_dim")
            query = sa.select(meta.c.key, meta.c.value).where(meta.c.key.in_(keys))
            stored = dict(conn.execute(query).tuples().all())
            model = stored.get("embedding_model")
            if model is None:
                conn.execute(meta.insert().values(key="embedding_model", value=self.embedder.model))
            elif model != self.embedder.model:
                raise ConfigurationError(
                    f"this database holds embeddings of {model!r}, not {self.embedder.model!r}; "
                    "open it with the same embedding model"
                )
            if "embedding_dim" in stored:
                self.embedder.known_dim = int(stored["embedding_dim"])
            self.db.dialect.prepare_vectors(conn, self.embedder)
            if "embedding_dim" not in stored and self.embedder.known_dim is not None:
                conn.execute(meta.insert().values(key="embedding_dim", value=str(self.embedder.known_dim)))

    def _embed_for_store(self, ns: str, drafts: list[Draft]) -> np.ndarray:
        """Vectors for the drafts, reusing any stored for the same content in the namespace."""
        if not drafts:
            return np.zeros((0, 0), dtype=np.float32)
        hashes = json_texts({d.content_hash for d in drafts})
        q = (
            sa.select(m.content_hash, memory_vectors.c.embedding)
            .join_from(memories, memory_vectors, memory_vectors.c.seq == m.seq)
            .where(live(ns), in_json_list(m.content_hash, "hashes", texts=True))
        )
        with self.db.read() as conn:
            known: dict[str, np.ndarray] = dict(conn.execute(q, {"hashes": hashes}).tuples().all())
        todo = [d.content for d in drafts if d.content_hash not in known]
        fresh = iter(self.embedder.embed(todo)) if todo else iter(())
        return np.stack([known[d.content_hash] if d.content_hash in known else next(fresh) for d in drafts])

    def restore(
        self,
        items: Iterable[Memory],
        links: Iterable[Link] = (),
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> ImportReport:
        """Insert complete memories as they are (ids, times, zones, statistics) and their links.

        All in one transaction, checked whole first. Memories whose id exists already, or whose
        content exists in the same thread, are skipped; so are links whose ends are not live.
        """
        ns, who = self.namespace_for(namespace), self._who(principal)
        given, edges, limit = list(items), list(links), self.settings.max_content_chars
        for x in given:
            check.record(x, limit)
        for e in edges:
            check.link_record(e)
        # The hash is the content's, whatever the document says (dedup relies on it); a memory
        # without a clock stamp gets one now.
        wanted = [
            replace(x, namespace=ns, content_hash=check.content_hash(x.content), hlc=x.hlc or self.stamp())
            for x in given
        ]
        vectors = self._embed_for_store(ns, [check.draft({"content": x.content}, limit) for x in wanted])
        with self.db.write() as conn:
            added, links_added = writes.restore(
                conn, self.db.dialect, ns, who, list(zip(wanted, vectors, strict=True)), edges,
                self._hlc.tick, self.clock.now(), self._window,
            )  # fmt: skip
        return ImportReport(ns, added, len(wanted) - added, links_added)

    def export(
        self, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> dict[str, Any]:
        """The namespace's live memories and links as a JSON-ready document."""
        from stellar_core.portability import export_namespace

        self._who(principal)
        return export_namespace(self, self.namespace_for(namespace))

    def import_(
        self,
        document: Mapping[str, Any],
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> ImportReport:
        """Load an ``export()`` document (into its own namespace unless one is given)."""
        from stellar_core.portability import import_namespace

        ns = (
            namespace
            if namespace is not None
            else document.get("namespace")
            if isinstance(document, Mapping)
            else None
        )
        return import_namespace(self, document, self.namespace_for(ns), self._who(principal))


def _namespaces() -> sa.Select[Any]:
    """Namespaces with a live memory, by skipping from one namespace to the next along the
    index that starts with it: a few probes per namespace instead of a scan of every row."""
    step = sa.select(sa.func.min(m.namespace).label("name")).cte("step", recursive=True)
    after = sa.select(sa.func.min(m.namespace)).where(m.namespace > step.c.name).scalar_subquery()
    step = step.union_all(sa.select(after).where(step.c.name.is_not(None)))
    alive = sa.exists().where(m.namespace == step.c.name, m.deleted_at.is_(None))
    return sa.select(step.c.name).where(step.c.name.is_not(None), alive).order_by(step.c.name)


_NAMESPACES = _namespaces()


def _url_for(location: str | Path) -> str:
    """A database URL from a URL, a database file or a data directory."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not (path.suffix in _DB_SUFFIXES or path.is_file()):
        path = path / "stellar.db"
    return f"sqlite:///{path.absolute()}"
