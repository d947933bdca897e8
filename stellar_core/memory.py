"""``StellarMemory``: the public API agents call, a facade of verbs over the ``Engine``.

Each verb checks its arguments, embeds what needs embedding (outside any transaction), and
does its work inside ``engine.reading(...)`` or ``engine.writing(...)``, the one gate every
read and write passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.admin import Security
from stellar_core.clock import Clock
from stellar_core.embeddings import Embedder
from stellar_core.engine import Engine
from stellar_core.errors import ValidationError
from stellar_core.graph import Graph
from stellar_core.lifecycle import forget_idle, reorbit
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
    Who,
    Zone,
)
from stellar_core.scoring import ZonePolicy
from stellar_core.search.recall import Filters, Query, recall
from stellar_core.security.crypto import KeyProvider
from stellar_core.settings import Settings
from stellar_core.store import changelog, edges
from stellar_core.store.database import url_for
from stellar_core.sync.replica import Sync

PAGE_MAX = 10_000  # memories() and events() return at most this many at once


class StellarMemory:
    """Shared long-term memory: ``store``, ``recall``, ``get``, ``update``, ``forget``, ``link``.

    ``StellarMemory()`` opens (or creates) the embedded default database in the data directory
    from settings; ``StellarMemory("path/to/dir")``, ``StellarMemory("file.db")`` or
    ``StellarMemory("sqlite:///...")`` choose another; ``create=False`` opens only a database
    that exists. Every call may name a ``namespace`` (a hard partition) and a ``principal``
    (the acting agent); both default to this instance's. ``keys`` supplies encryption keys
    (default: from the settings). ``security`` administers grants, API keys, encryption keys
    and the audit log; ``sync`` replicates with other databases through Redis (status,
    conflicts, subscriptions); ``graph`` analyses the links (centrality, communities, paths,
    GraphML); ``engine`` is for the jobs (connectors, dedup, summaries).
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
        keys: KeyProvider | None = None,
    ) -> None:
        s = settings or Settings()
        if location is not None:
            s = s.model_copy(update={"database_url": url_for(location)})
        self.engine = Engine(s, namespace=namespace, principal=agent, embedder=embedder, clock=clock,
                             background=background, create=create, keys=keys)  # fmt: skip
        self.security = Security(self.engine)  # grants, API keys, encryption keys, the audit log
        self.sync = Sync(self.engine)  # this database as a replica: events to and from the others
        self.graph = Graph(self.engine)  # the namespace's memories and links as a graph: analytics
        if s.sync_background:
            self.sync.start()
        self.settings = s
        self.namespace: str = self.engine.namespace  # of calls that name none
        self.principal: Principal = self.engine.principal  # who acts in calls that name nobody

    # --- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop syncing (publishing what is left), write pending recall statistics and release
        the database."""
        self.engine.flush()  # its recall counts are change events for sync to publish
        self.sync.close()
        self.engine.close()

    def __enter__(self) -> StellarMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write batched recall statistics now (they are otherwise written within a second)."""
        self.engine.flush()

    def warm(self, namespace: str | None = None) -> None:
        """Make search fast now rather than later: SQLite loads the namespace's vector index
        and builds its HNSW graph; PostgreSQL adds the vectors still waiting to its graph, reads
        the graph into the server's memory and builds the lists of common terms that its
        full-text search prunes with."""
        self.engine.warm(self.engine.scope(namespace, None)[0])

    # --- writes --------------------------------------------------------------------------------
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
        encrypted: bool = False,
        namespace: str | None = None,
        principal: Who = None,
    ) -> Memory:
        """Store one memory; storing identical content again (same thread) returns the existing one.

        ``thread`` groups memories of one conversation, session or document; ``position``
        orders them (default: after the thread's last memory). ``encrypted`` (or a tag among
        ``auto_encrypt_tags``) keeps its content encrypted at rest (AES-256-GCM).
        """
        item = {"content": content, "importance": importance, "pinned": pinned, "tags": tags,
                "metadata": metadata, "source": source, "thread": thread, "position": position,
                "encrypted": encrypted}  # fmt: skip
        return self.store_many([item], namespace=namespace, principal=principal)[0]

    def store_many(
        self, items: Iterable[str | Mapping[str, Any]], *, namespace: str | None = None, principal: Who = None
    ) -> list[Memory]:
        """Store a batch in one transaction: texts, or mappings of ``store`` keyword arguments."""
        ns, _ = self.engine.scope(namespace, principal)
        drafts = [check.draft(item, self.settings.max_content_chars) for item in check.items(items)]
        if not drafts:
            return []
        vectors = self.engine.vectors_for(ns, drafts)
        try:
            with self.engine.writing("store", ns, principal) as tx:
                stored = tx.store(drafts, vectors)
        except sa.exc.IntegrityError:  # a concurrent writer stored the same content: pick it up
            with self.engine.writing("store", ns, principal) as tx:
                stored = tx.store(drafts, vectors)
        return self.engine.opened(stored)

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
        principal: Who = None,
    ) -> Memory:
        """Change the given fields of a memory; the rest stays as it is."""
        memory_id = check.memory_id(memory_id)
        values = check.changes(self.settings.max_content_chars, content, importance, pinned, metadata)
        new_tags = check.tags(tags) if tags is not None else None
        vector = self.engine.embed([values["content"]])[0] if "content" in values else None
        with self.engine.writing("update", namespace, principal) as tx:
            updated = tx.update(memory_id, values, new_tags, vector)
        return self.engine.opened([updated])[0]

    def forget(self, memory_id: str, *, namespace: str | None = None, principal: Who = None) -> Memory:
        """Forget a memory: it becomes a tombstone, invisible to recall and get, purged later."""
        memory_id = check.memory_id(memory_id)
        with self.engine.writing("forget", namespace, principal) as tx:
            gone = tx.forget(memory_id)
        return self.engine.opened([gone])[0]

    def link(
        self,
        source_id: str,
        target_id: str,
        *,
        kind: str = "related",
        weight: float = 1.0,
        namespace: str | None = None,
        principal: Who = None,
    ) -> Link:
        """A directed, typed, weighted edge; linking a pair again with that kind sets the weight."""
        source_id, target_id = check.memory_id(source_id), check.memory_id(target_id)
        kind, w = check.link_kind(kind), check.weight(weight)
        with self.engine.writing("link", namespace, principal) as tx:
            return tx.link(source_id, target_id, kind, w)

    def configure_zones(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        capacities: Mapping[str, int] | None = None,
        namespace: str | None = None,
        principal: Who = None,
    ) -> ZonePolicy:
        """Give a namespace its own zone thresholds and/or capacities (others keep the defaults)."""
        config = check.zone_config(thresholds, capacities)
        try:
            policy = ZonePolicy.from_settings(self.settings, config)
            policy.check()
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"invalid zone configuration: {exc}") from exc
        with self.engine.writing("configure", namespace, principal) as tx:
            tx.configure(config)
        return policy

    def reorbit(
        self, *, context: str | None = None, namespace: str | None = None, principal: Who = None
    ) -> ReorbitReport:
        """Rescore and rezone a namespace, forget idle Cloud memories, purge old tombstones.

        ``context`` (text) adds a similarity-to-context term to every memory's score.
        """
        ns, _ = self.engine.scope(namespace, principal)
        self.engine.flush()  # scores must see every recall so far
        similarity = None
        if context is not None:
            query = self.engine.embed([check.content(context, self.settings.max_content_chars)])[0]
            with self.engine.reading("reorbit", ns, principal) as r:
                similarity = self.engine.vectors().get(ns, r.conn).all_similarities(query)
        policy = self.engine.zone_policy(ns)
        with self.engine.writing("reorbit", ns, principal) as tx:
            tx.lock(exclusive=True)
            report = reorbit(tx, policy, similarity)
            tx.dialect.refresh_statistics(tx.conn)  # the pass reshaped the table
        return report

    def forget_idle(self, *, namespace: str | None = None, principal: Who = None) -> ForgetReport:
        """Forget the memories idle in Cloud long enough for their importance, and purge old
        tombstones, with zones as the last reorbit left them (``reorbit`` does this too)."""
        started = time.perf_counter()
        self.engine.flush()  # a memory recalled just now is not idle
        with self.engine.writing("reorbit", namespace, principal) as tx:
            tx.lock(exclusive=True)
            forgotten, purged = forget_idle(tx)
        return ForgetReport(tx.namespace, forgotten, purged, time.perf_counter() - started)

    # --- reads ---------------------------------------------------------------------------------
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
        principal: Who = None,
    ) -> list[RecallHit]:
        """The ``k`` memories most relevant to ``query``, best first.

        Filters: ``zones``, ``tags`` (every one must be present), ``since`` / ``until``
        (creation time, datetime or epoch seconds), ``source_type``. ``expand`` adds linked
        memories of the hits, each scored below the hit that brought it. ``count=False`` is a
        look, not a use (a dashboard, an audit): the hits' recall statistics stay as they are.
        """
        text = check.content(query, self.settings.max_content_chars)
        when = check.timestamp(since), check.timestamp(until)
        filters = Filters(check.zones(zones), check.tags(tags), *when, check.source_type(source_type))
        k = check.int_in_range(k, "k", 1000)
        vector = self.engine.embed([text])[0]
        now = self.engine.clock.now()
        with self.engine.reading("recall", namespace, principal) as r:
            keyed = self.engine.keyed_terms(r.namespace, text)
            asked = Query(r.namespace, text, vector, k, filters, bool(expand), keyed)
            index = self.engine.vectors().get(r.namespace, r.conn)
            dialect = self.engine.db.dialect
            side = self.engine.db.side_read if dialect.parallel_reads else None
            hits = recall(r.conn, dialect, index, asked, self.settings, now, side)
            found = self.engine.opened(x for _, x, _, _ in hits)
            r.saw(x.id for x in found)
        if count:
            self.engine.counted([seq for seq, *_ in hits], now)
        return [RecallHit(x, relevance, via) for x, (_, _, relevance, via) in zip(found, hits, strict=True)]

    def get(self, memory_id: str, *, namespace: str | None = None, principal: Who = None) -> Memory:
        """One live memory by id; ``NotFoundError`` if absent, forgotten or in another namespace."""
        memory_id = check.memory_id(memory_id)
        with self.engine.admitted("get", namespace, principal) as a:
            ns = a.namespace

            def load() -> Memory:  # the cache holds what the database holds: sealed
                with self.engine.snapshot() as conn:
                    return reads.live_memory(conn, ns, memory_id)[1]

            found = self.engine.cache.get(ns, memory_id, load, lambda: self.engine.version(ns, memory_id))
            a.saw([memory_id])
            return self.engine.opened([found])[0]

    def thread(self, thread: str, *, namespace: str | None = None, principal: Who = None) -> list[Memory]:
        """The live memories of a thread (conversation, session, document) in position order."""
        check.thread(thread, None)
        with self.engine.reading("get", namespace, principal) as r:
            found = self.engine.opened(reads.thread(r.conn, r.namespace, thread))
            r.saw(x.id for x in found)
            return found

    def links(
        self,
        memory_id: str,
        *,
        direction: str = "both",
        kind: str | None = None,
        namespace: str | None = None,
        principal: Who = None,
    ) -> list[Link]:
        """Edges from (``out``), to (``in``) or either way (``both``) of a memory."""
        if direction not in ("out", "in", "both"):
            raise ValidationError("direction must be 'out', 'in' or 'both'")
        memory_id = check.memory_id(memory_id)
        kind = check.link_kind(kind) if kind is not None else None
        with self.engine.reading("get", namespace, principal) as r:
            reads.live_memory(r.conn, r.namespace, memory_id)
            found = edges.around(r.conn, r.namespace, memory_id, direction, kind)
            r.saw([memory_id])
            return found

    def stats(self, *, namespace: str | None = None, principal: Who = None) -> Stats:
        """Counts, zone sizes and mean score of a namespace."""
        self.engine.flush()
        with self.engine.reading("stats", namespace, principal) as r:
            return reads.stats(r.conn, r.namespace)

    def memories(
        self,
        *,
        zones: Iterable[Zone | str] | None = None,
        limit: int = 100,
        offset: int = 0,
        namespace: str | None = None,
        principal: Who = None,
    ) -> list[Memory]:
        """Live memories of the namespace, highest score first (a page of ``limit`` from
        ``offset``), optionally only those in ``zones``."""
        limit = check.int_in_range(limit, "limit", PAGE_MAX)
        offset = check.int_in_range(offset, "offset", 2**62, least=0)
        wanted = check.zones(zones) if zones is not None else None
        self.engine.flush()
        with self.engine.reading("get", namespace, principal) as r:
            found = self.engine.opened(reads.page(r.conn, r.namespace, wanted, limit, offset))
            r.saw(x.id for x in found)
            return found

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        oldest_first: bool = False,
        namespace: str | None = None,
        principal: Who = None,
    ) -> list[ChangeEvent]:
        """The namespace's change log: at most ``limit`` events with a ``seq`` above ``after``,
        the newest of them newest first, or (``oldest_first``) the next ones in order, which
        is how to follow the log without missing any: pass the last seq seen as ``after``."""
        after = check.int_in_range(after, "after", 2**62, least=0)
        limit = check.int_in_range(limit, "limit", PAGE_MAX)
        with self.engine.reading("events", namespace, principal) as r:
            read = changelog.following if oldest_first else changelog.newest
            return read(r.conn, r.namespace, after, limit)

    def namespaces(self, *, principal: Who = None) -> list[str]:
        """Namespaces that hold at least one live memory (with access control on: those the
        principal may read)."""
        with self.engine.reading("namespaces", principal=principal) as r:
            return [ns for ns in reads.namespaces(r.conn) if self.engine.may(r.principal, "recall", ns)]

    def zone_policy(self, namespace: str | None = None, *, principal: Who = None) -> ZonePolicy:
        """The namespace's zone thresholds and capacities."""
        with self.engine.reading("stats", namespace, principal) as r:
            return reads.zone_policy(r.conn, r.namespace, self.settings)

    def export(self, *, namespace: str | None = None, principal: Who = None) -> dict[str, Any]:
        """The namespace's live memories and links as a JSON-ready document."""
        from stellar_core.portability import export_namespace

        return export_namespace(self.engine, namespace, principal)

    def import_(
        self, document: Mapping[str, Any], *, namespace: str | None = None, principal: Who = None
    ) -> ImportReport:
        """Load an ``export()`` document (into its own namespace unless one is given)."""
        from stellar_core.portability import import_namespace

        return import_namespace(self.engine, document, namespace, principal)
