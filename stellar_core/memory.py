"""``StellarMemory``: the public API agents call."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.clock import Clock, SystemClock
from stellar_core.embeddings import CachedEmbedder, Embedder, embedder_from_settings
from stellar_core.errors import ConfigurationError, NotFoundError, ValidationError
from stellar_core.housekeeping import RecallLog, Upkeep
from stellar_core.lifecycle import reorbit as reorbit_pass
from stellar_core.models import (
    ImportReport,
    Link,
    Memory,
    Principal,
    RecallHit,
    ReorbitReport,
    Stats,
    Zone,
)
from stellar_core.scoring import ZonePolicy, memory_score
from stellar_core.search import lexical
from stellar_core.search.indexes import VectorIndexes
from stellar_core.search.recall import Filters
from stellar_core.search.recall import recall as recall_pass
from stellar_core.settings import Settings
from stellar_core.store.engine import Database
from stellar_core.store.records import fetch, live, m, put_tags, to_row, vector_to_blob
from stellar_core.store.schema import changes, links, memories, memory_tags, meta, namespace_config
from stellar_core.sync import outbox
from stellar_core.sync.clock import HybridLogicalClock, bump
from stellar_core.validation import Draft

log = logging.getLogger(__name__)

_DB_SUFFIXES = {".db", ".sqlite", ".sqlite3"}


class StellarMemory:
    """Shared long-term memory: ``store``, ``recall``, ``get``, ``update``, ``forget``, ``link``.

    ``StellarMemory()`` opens (or creates) the embedded default database in the data
    directory from settings; ``StellarMemory("path/to/dir")``, ``StellarMemory("file.db")`` or
    ``StellarMemory("sqlite:///...")`` choose another. Every call may name a ``namespace`` (a
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
    ) -> None:
        s = settings or Settings()
        if location is not None:
            s = s.model_copy(update={"database_url": _url_for(location)})
        self.settings = s
        self.namespace = check.namespace(namespace or s.namespace)
        self.principal = check.principal(agent, Principal(s.agent_id))
        self.clock: Clock = clock or SystemClock()
        self._hlc = HybridLogicalClock(self.clock)
        self.embedder = CachedEmbedder(embedder or embedder_from_settings(s), s.query_cache_size)
        self.db = Database(s.sqlalchemy_url())
        self._check_model()
        with self.db.read() as conn:  # never stamp below what this database has already seen
            self._hlc.observe(conn.execute(sa.select(sa.func.max(changes.c.hlc))).scalar() or "")
        self._indexes: VectorIndexes | None = None
        self._recalls = RecallLog(self.db)
        self._upkeep = Upkeep(s.stats_flush_seconds, [self._recalls.flush, self._maintain_indexes])
        if background:
            self._upkeep.start()

    # --- lifecycle of the object ------------------------------------------------------------
    def close(self) -> None:
        """Write pending recall statistics and release the database."""
        self._upkeep.stop()
        self._recalls.flush()
        self.db.close()

    def __enter__(self) -> StellarMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write batched recall statistics now (they are otherwise written within a second)."""
        self._recalls.flush()

    def warm(self, namespace: str | None = None) -> None:
        """Load the namespace's vector index and build its HNSW graph now, not lazily."""
        self._vectors().get(self._ns(namespace)).maintain()

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
        ns, who = self._ns(namespace), self._who(principal)
        drafts = [check.draft(item, self.settings.max_content_chars) for item in items]
        if not drafts:
            return []
        vectors = self._embed_for_store(drafts)
        policy = self.zone_policy(ns)
        for attempt in range(2):
            try:
                with self.db.write() as conn:
                    return self._insert(conn, ns, who, drafts, vectors, policy)
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
        ns, who = self._ns(namespace), self._who(principal)
        now = self.clock.now()
        values: dict[str, Any] = {}
        if content is not None:
            values["content"] = check.content(content, self.settings.max_content_chars)
            values["content_hash"] = check.content_hash(content)
            values["embedding"] = vector_to_blob(self.embedder.embed([content])[0])
        if importance is not None:
            values["importance"] = check.importance(importance)
        if pinned is not None:
            if not isinstance(pinned, bool):
                raise ValidationError("pinned must be true or false")
            values["pinned"] = pinned
        if metadata is not None:
            values["meta"] = check.metadata(metadata)
        new_tags = check.tags(tags) if tags is not None else None
        with self.db.write() as conn:
            current = self._live(conn, ns, memory_id)
            seq = self._seq(conn, memory_id)
            vc = bump(current.vector_clock, who.id)
            values.update(updated_at=now, last_access_at=now, hlc=self._hlc.tick(), vector_clock=vc)
            try:
                conn.execute(memories.update().where(m.seq == seq).values(**values))
            except sa.exc.IntegrityError as exc:
                raise ValidationError("an identical memory already exists in this thread") from exc
            if new_tags is not None:
                conn.execute(memory_tags.delete().where(memory_tags.c.memory_seq == seq))
                put_tags(conn, ((seq, t) for t in new_tags))
            if content is not None:
                lexical.reindex(
                    conn, self.db.dialect, ns, [seq], self.settings.thread_context_window
                )
            changed = sorted(
                k for k in values if k not in ("embedding", "updated_at", "last_access_at")
            )
            updated = fetch(conn, m.seq == seq)[seq]
            payload = {k: v for k, v in updated.to_dict().items() if k in changed or k == "tags"}
            self._record(conn, ns, memory_id, "update", who, updated.hlc, vc, payload, now)
        return updated

    def forget(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """Forget a memory: it becomes a tombstone, invisible to recall and get, purged later."""
        ns, who = self._ns(namespace), self._who(principal)
        now = self.clock.now()
        with self.db.write() as conn:
            current = self._live(conn, ns, memory_id)
            seq = self._seq(conn, memory_id)
            vc, stamp = bump(current.vector_clock, who.id), self._hlc.tick()
            conn.execute(
                memories.update()
                .where(m.seq == seq)
                .values(deleted_at=now, hlc=stamp, vector_clock=vc)
            )
            self.db.dialect.text_index_drop(conn, [seq])
            neighbours = self._thread_neighbours(conn, ns, current)
            lexical.reindex(
                conn, self.db.dialect, ns, neighbours, self.settings.thread_context_window
            )
            self._record(
                conn, ns, memory_id, "forget", who, stamp, vc, {"reason": "requested"}, now
            )
        return replace(current, deleted_at=now, hlc=stamp, vector_clock=vc)

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
        ns, who = self._ns(namespace), self._who(principal)
        if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
            raise ValidationError(f"invalid link kind {kind!r}: 1-64 characters")
        w, now = check.weight(weight), self.clock.now()
        if source_id == target_id:
            raise ValidationError("a memory cannot link to itself")
        with self.db.write() as conn:
            src = self._live(conn, ns, source_id)
            self._live(conn, ns, target_id)
            row = {
                "namespace": ns,
                "source_id": source_id,
                "target_id": target_id,
                "kind": kind,
                "weight": w,
                "created_at": now,
            }
            ins = self.db.dialect.insert(links).values(**row)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["source_id", "target_id", "kind"], set_={"weight": w}
                )
            )
            payload = {"target_id": target_id, "kind": kind, "weight": w}
            self._record(
                conn, ns, source_id, "link", who, self._hlc.tick(), src.vector_clock, payload, now
            )
        return Link(source_id, target_id, kind, w, now)

    def configure_zones(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        capacities: Mapping[str, int] | None = None,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> ZonePolicy:
        """Give a namespace its own zone thresholds and/or capacities (others keep the defaults)."""
        ns = self._ns(namespace)
        self._who(principal)
        config = {"thresholds": dict(thresholds or {}), "capacities": dict(capacities or {})}
        try:
            policy = ZonePolicy.from_settings(self.settings, config)
            policy.check()
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"invalid zone configuration: {exc}") from exc
        with self.db.write() as conn:
            ins = self.db.dialect.insert(namespace_config).values(namespace=ns, config=config)
            conn.execute(
                ins.on_conflict_do_update(index_elements=["namespace"], set_={"config": config})
            )
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
        ns, who = self._ns(namespace), self._who(principal)
        self._recalls.flush()  # scores must see every recall so far
        ctx = None
        if context is not None:
            query = self.embedder.embed([check.content(context, self.settings.max_content_chars)])[
                0
            ]
            ctx = self._vectors().get(ns).all_similarities(query)
        policy = self.zone_policy(ns)
        with self.db.write() as conn:
            return reorbit_pass(
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
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[RecallHit]:
        """The ``k`` memories most relevant to ``query``, best first.

        Filters: ``zones``, ``tags`` (every one must be present), ``since`` / ``until``
        (creation time, datetime or epoch seconds), ``source_type``. ``expand`` adds linked
        memories of the hits, each scored below the hit that brought it.
        """
        ns = self._ns(namespace)
        self._who(principal)
        text = check.content(query, self.settings.max_content_chars)
        k = check.positive_int(k, "k", 1000)
        filters = Filters(
            check.zones(zones),
            check.tags(tags),
            check.timestamp(since),
            check.timestamp(until),
            source_type,
        )
        vector = self.embedder.embed([text])[0]
        index = self._vectors().get(ns)
        now = self.clock.now()
        with self.db.read() as conn:
            ranked = recall_pass(
                conn,
                self.db.dialect,
                index,
                ns,
                text,
                vector,
                k,
                filters,
                bool(expand),
                self.settings,
                now,
            )
            found = fetch(conn, m.seq.in_([seq for seq, _, _ in ranked]))
        self._recalls.add((seq for seq, _, _ in ranked), now)
        return [RecallHit(found[seq], rel, via) for seq, rel, via in ranked if seq in found]

    def get(
        self,
        memory_id: str,
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> Memory:
        """One live memory by id; ``NotFoundError`` if absent, forgotten or in another namespace."""
        ns = self._ns(namespace)
        self._who(principal)
        with self.db.read() as conn:
            return self._live(conn, ns, memory_id)

    def thread(
        self, thread: str, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> list[Memory]:
        """The live memories of a thread (conversation, session, document) in position order."""
        ns = self._ns(namespace)
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
        ns = self._ns(namespace)
        self._who(principal)
        if direction not in ("out", "in", "both"):
            raise ValidationError("direction must be 'out', 'in' or 'both'")
        c = links.c
        ends = {"out": c.source_id == memory_id, "in": c.target_id == memory_id}
        where = ends[direction] if direction != "both" else sa.or_(*ends.values())
        q = sa.select(c.source_id, c.target_id, c.kind, c.weight, c.created_at).where(
            c.namespace == ns, where
        )
        if kind is not None:
            q = q.where(c.kind == kind)
        with self.db.read() as conn:
            self._live(conn, ns, memory_id)
            alive = set(
                conn.execute(
                    sa.select(m.id).where(
                        live(ns),
                        m.id.in_(
                            sa.select(c.source_id)
                            .where(where)
                            .union(sa.select(c.target_id).where(where))
                        ),
                    )
                ).scalars()
            )
            rows = conn.execute(q.order_by(c.created_at)).all()
        return [Link(*r) for r in rows if r[0] in alive and r[1] in alive]

    def stats(
        self, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> Stats:
        """Counts, zone sizes and mean score of a namespace."""
        ns = self._ns(namespace)
        self._who(principal)
        self._recalls.flush()
        with self.db.read() as conn:
            zones = dict.fromkeys(Zone, 0)
            for zone, count in conn.execute(
                sa.select(m.zone, sa.func.count()).where(live(ns)).group_by(m.zone)
            ):
                zones[Zone(zone)] = count
            mean = conn.execute(sa.select(sa.func.avg(m.score)).where(live(ns))).scalar()
            forgotten = conn.execute(
                sa.select(sa.func.count()).where(m.namespace == ns, m.deleted_at.is_not(None))
            ).scalar()
            n_links = conn.execute(
                sa.select(sa.func.count()).where(links.c.namespace == ns)
            ).scalar()
            threads = conn.execute(
                sa.select(sa.func.count(sa.distinct(m.thread))).where(live(ns))
            ).scalar()
        return Stats(
            ns,
            sum(zones.values()),
            int(forgotten or 0),
            int(n_links or 0),
            int(threads or 0),
            zones,
            float(mean or 0.0),
        )

    def namespaces(self) -> list[str]:
        """Namespaces that hold at least one live memory."""
        with self.db.read() as conn:
            q = (
                sa.select(sa.distinct(m.namespace))
                .where(m.deleted_at.is_(None))
                .order_by(m.namespace)
            )
            return list(conn.execute(q).scalars())

    def zone_policy(self, namespace: str | None = None) -> ZonePolicy:
        """The namespace's zone thresholds and capacities."""
        ns = self._ns(namespace)
        with self.db.read() as conn:
            config = conn.execute(
                sa.select(namespace_config.c.config).where(namespace_config.c.namespace == ns)
            ).scalar()
        return ZonePolicy.from_settings(self.settings, config)

    def stamp(self) -> str:
        """A fresh hybrid-logical-clock timestamp of this agent (orders changes across agents)."""
        return self._hlc.tick()

    # --- internals -------------------------------------------------------------------------
    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else check.namespace(namespace)

    def _who(self, principal: Principal | str | None) -> Principal:
        return check.principal(principal, self.principal)

    def _vectors(self) -> VectorIndexes:
        if self._indexes is None:
            self._indexes = VectorIndexes(self.db, self.embedder.dim, self.settings.hnsw_min_rows)
        return self._indexes

    def _maintain_indexes(self) -> None:
        if self._indexes is not None:
            self._indexes.maintain()

    def _check_model(self) -> None:
        """Vectors of different models must never mix in one database."""
        with self.db.write() as conn:
            stored = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "embedding_model")
            ).scalar()
            if stored is None:
                conn.execute(meta.insert().values(key="embedding_model", value=self.embedder.model))
            elif stored != self.embedder.model:
                raise ConfigurationError(
                    f"this database holds embeddings of {stored!r}, not {self.embedder.model!r}; "
                    "open it with the same embedding model"
                )

    def _live(self, conn: sa.Connection, ns: str, memory_id: Any) -> Memory:
        if not isinstance(memory_id, str):
            raise ValidationError(f"memory id must be a string, not {type(memory_id).__name__}")
        found = fetch(conn, sa.and_(live(ns), m.id == memory_id))
        if not found:
            raise NotFoundError(f"no memory {memory_id!r} in namespace {ns!r}")
        return next(iter(found.values()))

    @staticmethod
    def _seq(conn: sa.Connection, memory_id: str) -> int:
        return int(conn.execute(sa.select(m.seq).where(m.id == memory_id)).scalar_one())

    def _thread_neighbours(self, conn: sa.Connection, ns: str, mem: Memory) -> list[int]:
        if mem.thread is None or mem.position is None:
            return []
        w = self.settings.thread_context_window
        q = sa.select(m.seq).where(
            live(ns), m.thread == mem.thread, m.position.between(mem.position - w, mem.position + w)
        )
        return list(conn.execute(q).scalars())

    def _record(
        self,
        conn: sa.Connection,
        ns: str,
        memory_id: str,
        op: str,
        who: Principal,
        stamp: str,
        vc: dict[str, int],
        payload: dict[str, Any],
        now: float,
    ) -> None:
        outbox.record(
            conn,
            [
                {
                    "namespace": ns,
                    "memory_id": memory_id,
                    "op": op,
                    "agent": who.id,
                    "hlc": stamp,
                    "vector_clock": vc,
                    "payload": payload,
                    "created_at": now,
                }
            ],
        )

    def _embed_for_store(self, drafts: list[Draft]) -> np.ndarray:
        """Vectors for the drafts, reusing any already stored for the same content."""
        hashes = list({d.content_hash for d in drafts})
        known: dict[str, bytes] = {}
        with self.db.read() as conn:
            for i in range(0, len(hashes), 900):
                q = sa.select(m.content_hash, m.embedding).where(
                    m.content_hash.in_(hashes[i : i + 900]), m.embedding.is_not(None)
                )
                known.update(conn.execute(q).all())
        todo = [d.content for d in drafts if d.content_hash not in known]
        fresh = iter(self.embedder.embed(todo)) if todo else iter(())
        return np.stack(
            [
                np.frombuffer(known[d.content_hash], dtype="<f4")
                if d.content_hash in known
                else next(fresh)
                for d in drafts
            ]
        )

    def _insert(
        self,
        conn: sa.Connection,
        ns: str,
        who: Principal,
        drafts: list[Draft],
        vectors: np.ndarray,
        policy: ZonePolicy,
    ) -> list[Memory]:
        now, s = self.clock.now(), self.settings
        existing = fetch(
            conn, sa.and_(live(ns), m.content_hash.in_({d.content_hash for d in drafts}))
        )
        by_key = {(x.thread, x.content_hash): x for x in existing.values()}
        next_pos = self._next_positions(
            conn, ns, {d.thread for d in drafts if d.thread and d.position is None}
        )
        out: list[Memory] = []
        new: list[tuple[Memory, np.ndarray]] = []
        for d, vec in zip(drafts, vectors, strict=True):
            key = (d.thread, d.content_hash)
            if key not in by_key:
                pos = d.position
                if d.thread is not None and pos is None:
                    pos, next_pos[d.thread] = next_pos[d.thread], next_pos[d.thread] + 1
                score = memory_score(0, 0.0, d.importance, s)
                by_key[key] = Memory(
                    id=uuid.uuid4().hex,
                    namespace=ns,
                    content=d.content,
                    content_hash=d.content_hash,
                    importance=d.importance,
                    pinned=d.pinned,
                    recall_count=0,
                    created_at=now,
                    updated_at=now,
                    last_recalled_at=None,
                    last_access_at=now,
                    zone=policy.zone_for(score),
                    score=score,
                    tags=d.tags,
                    metadata=d.metadata,
                    source=d.source,
                    thread=d.thread,
                    position=pos,
                    origin_agent=who.id,
                    hlc=self._hlc.tick(),
                    vector_clock={who.id: 1},
                )
                new.append((by_key[key], vec))
            out.append(by_key[key])
        self._write(conn, ns, who, new, "store", now)
        return out

    def _write(
        self,
        conn: sa.Connection,
        ns: str,
        who: Principal,
        new: list[tuple[Memory, np.ndarray]],
        op: str,
        now: float,
    ) -> None:
        """Insert memories with their tags, change events and full-text rows."""
        if not new:
            return
        rows = [{**to_row(x), "embedding": vector_to_blob(vec)} for x, vec in new]
        seqs = list(
            conn.execute(
                memories.insert().returning(m.seq, sort_by_parameter_order=True), rows
            ).scalars()
        )
        put_tags(conn, ((seq, t) for (x, _), seq in zip(new, seqs, strict=True) for t in x.tags))
        outbox.record(
            conn,
            [
                {
                    "namespace": ns,
                    "memory_id": x.id,
                    "op": op,
                    "agent": who.id,
                    "hlc": x.hlc,
                    "vector_clock": x.vector_clock,
                    "payload": x.to_dict(),
                    "created_at": now,
                }
                for x, _ in new
            ],
        )
        lexical.reindex(conn, self.db.dialect, ns, seqs, self.settings.thread_context_window)

    def restore(
        self,
        items: Iterable[Memory],
        *,
        namespace: str | None = None,
        principal: Principal | str | None = None,
    ) -> list[Memory]:
        """Insert complete memories as they are (ids, times, zones, statistics): imports use it.

        Memories whose id or content (same thread) exists already are skipped; the stored ones
        are returned.
        """
        ns, who = self._ns(namespace), self._who(principal)
        wanted = [replace(x, namespace=ns) for x in items]
        for x in wanted:
            check.content(x.content, self.settings.max_content_chars)
            check.importance(x.importance)
        vectors = self._embed_for_store(
            [check.draft({"content": x.content}, self.settings.max_content_chars) for x in wanted]
        )
        with self.db.write() as conn:
            ids = {x.id for x in wanted}
            taken = set(conn.execute(sa.select(m.id).where(m.id.in_(ids))).scalars())
            hashes = {x.content_hash for x in wanted}
            keys = {
                (t, h)
                for t, h in conn.execute(
                    sa.select(m.thread, m.content_hash).where(live(ns), m.content_hash.in_(hashes))
                )
            }
            new = []
            for x, vec in zip(wanted, vectors, strict=True):
                if x.id in taken or (x.thread, x.content_hash) in keys or x.forgotten:
                    continue
                taken.add(x.id)
                keys.add((x.thread, x.content_hash))
                new.append((x, vec))
            self._write(conn, ns, who, new, "import", self.clock.now())
        return [x for x, _ in new]

    def export(
        self, *, namespace: str | None = None, principal: Principal | str | None = None
    ) -> dict[str, Any]:
        """The namespace's live memories and links as a JSON-ready document."""
        from stellar_core.portability import export_namespace

        self._who(principal)
        return export_namespace(self, self._ns(namespace))

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
        return import_namespace(self, document, self._ns(ns), self._who(principal))

    @staticmethod
    def _next_positions(conn: sa.Connection, ns: str, threads: set[str | None]) -> dict[str, int]:
        if not threads:
            return {}
        q = (
            sa.select(m.thread, sa.func.max(m.position))
            .where(m.namespace == ns, m.thread.in_(threads))
            .group_by(m.thread)
        )
        found = dict(conn.execute(q).all())
        return {t: (found[t] + 1 if found.get(t) is not None else 0) for t in threads if t}


def _url_for(location: str | Path) -> str:
    """A database URL from a URL, a database file or a data directory."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not (path.suffix in _DB_SUFFIXES or path.is_file()):
        path = path / "stellar.db"
    return f"sqlite:///{path.resolve()}"
