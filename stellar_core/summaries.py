"""Summary memories: a short memory standing for each long document or memory of a namespace.

What gets a summary: every ingested document (the live chunks of one source key of type
``file``, ``web`` or ``api``, read in chunk order) and every other single memory whose text is
at least ``summary_min_chars`` long and longer than a summary may be. A summary is a memory of
source type ``summary`` whose source URL is the document's key (``memory:<id>`` for a single
memory), with metadata ``summary_of``, ``source_hash`` (of the summarised text) and
``summarizer``, the highest importance of its sources, no thread, and a ``derived_from`` link
to each source memory. Running ``summarise`` again
- writes nothing for a source whose text has the hash its summary records;
- stores a new summary for a changed source and forgets the old one, in one transaction (a
  crash leaves the old summary or the new one);
- forgets summaries whose sources are gone, or changed and now too short to summarise.
A source the summariser fails on is reported and keeps whatever summary it had. A summary
holds its sources' text, so purging a source purges it too (lifecycle.py, decision 0029).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.engine import Engine
from stellar_core.errors import NotFoundError, SummarizerError
from stellar_core.store.edges import DERIVED_FROM, SUMMARY_TYPE
from stellar_core.store.records import live, m
from stellar_core.store.schema import links, memories
from stellar_core.summarizers import LlmSummarizer, Summarizer, shorten, summarizer_for
from stellar_core.writes import Transaction

DOCUMENT_TYPES = frozenset({"file", "web", "api"})
MEMORY_KEY = "memory:"  # key prefix of a single memory's summary: memory:<id>
_BATCH = 200  # sources read, summarised and stored together (one embedding batch)

T = TypeVar("T")

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory


@dataclass(frozen=True)
class SummaryResult:
    """What one ``summarise`` run did in a namespace.

    ``documents`` and ``memories`` count the sources long enough to summarise. ``created``
    summaries were written (new, or an old one whose wording still holds brought up to date);
    ``unchanged`` sources already had a current summary: nothing was written for them.
    ``replaced`` counts out-of-date summaries forgotten (their source changed or is gone).
    ``failed`` sources could not be summarised, with the reason; their old summary stays.
    """

    documents: int = 0
    memories: int = 0
    created: int = 0
    unchanged: int = 0
    replaced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source key, reason)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the same in a flow result, a log line or a test."""
        out = asdict(self)
        out["failed"] = [{"source": key, "reason": why} for key, why in self.failed]
        return out


def summarise(
    mem: StellarMemory,
    *,
    namespace: str | None = None,
    summarizer: Summarizer | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
) -> SummaryResult:
    """Bring the namespace's summaries up to date with its documents and long memories.

    ``summarizer`` defaults to the one the settings name; ``min_chars`` to
    ``summary_min_chars``, ``max_chars`` (the longest summary) to ``summary_max_chars``.
    """
    s = mem.settings
    ns, _ = mem.engine.scope(namespace, None)
    least = s.summary_min_chars if min_chars is None else check.int_in_range(min_chars, "min_chars", 10**9)
    limit = s.max_content_chars
    most = s.summary_max_chars if max_chars is None else check.int_in_range(max_chars, "max_chars", limit)
    chosen = summarizer or summarizer_for(s)
    try:
        return _Run(mem.engine, ns, chosen, least, most).run()
    finally:
        if summarizer is None and isinstance(chosen, LlmSummarizer):
            chosen.close()


@dataclass
class _Summary:
    """A live summary memory, as far as deciding its fate needs."""

    id: str
    content_hash: str
    source_hash: str | None
    linked: set[str]  # ids its derived_from links point to


@dataclass(frozen=True)
class _Source:
    """A document or single memory, with the text a summary is made of."""

    key: str
    text: str
    ids: tuple[str, ...]
    importance: float

    @property
    def digest(self) -> str:
        return check.content_hash(self.text)


@dataclass
class _Run:
    engine: Engine
    ns: str
    summarizer: Summarizer
    min_chars: int
    max_chars: int
    documents: int = 0
    memories: int = 0
    created: int = 0
    unchanged: int = 0
    replaced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    summaries: dict[str, list[_Summary]] = field(default_factory=dict)

    def run(self) -> SummaryResult:
        # A text that fits in a summary is its own summary (and would be stored as itself).
        floor = max(self.min_chars, self.max_chars + 1)
        with self.engine.reading("summarise", self.ns) as r:
            self.summaries = _summaries(r.conn, self.ns)
            doc_keys = _long_documents(r.conn, self.ns, floor)
            singles = _long_memories(r.conn, self.ns, floor)
        self.documents, self.memories = len(doc_keys), len(singles)
        for keys in _batches(doc_keys):
            self._settle(self._documents(keys))
        for batch in _batches(singles):
            self._settle(self._singles(batch))
        self._forget_leftovers()
        return SummaryResult(
            self.documents, self.memories, self.created, self.unchanged, self.replaced, self.failed
        )

    # --- reading sources ---------------------------------------------------------------------
    def _documents(self, keys: Sequence[str]) -> list[_Source]:
        """The documents of ``keys``, their chunks in chunk order; keys gone meanwhile are left out."""
        q = (
            sa.select(m.id, m.source_url, m.content, m.importance)
            .where(live(self.ns), m.source_type.in_(DOCUMENT_TYPES), m.source_url.in_(keys), ~m.encrypted)
            .order_by(m.source_url, sa.func.coalesce(m.source_chunk, 0), m.seq)
        )
        chunks: dict[str, list[tuple[str, str, float]]] = {}  # key: (id, content, importance)
        with self.engine.reading("summarise", self.ns) as r:
            for memory_id, key, content, importance in r.conn.execute(q).tuples():
                chunks.setdefault(key, []).append((memory_id, content, importance))
        return [
            _Source(
                key,
                "\n\n".join(content for _, content, _ in rows),
                tuple(memory_id for memory_id, _, _ in rows),
                max(importance for _, _, importance in rows),
            )
            for key, rows in chunks.items()
        ]

    def _singles(self, batch: Sequence[tuple[str, str, float]]) -> list[_Source]:
        """Single memories: those whose summary is current need no text, so it is read for the rest."""
        todo: dict[str, float] = {}
        for memory_id, digest, importance in batch:
            key = MEMORY_KEY + memory_id
            if any(x.source_hash == digest for x in self.summaries.get(key, [])):
                self._keep(key, digest, (memory_id,))
            else:
                todo[memory_id] = importance
        if not todo:
            return []
        q = sa.select(m.id, m.content).where(live(self.ns), m.id.in_(list(todo)))
        with self.engine.reading("summarise", self.ns) as r:
            texts = dict(r.conn.execute(q).tuples().all())
        return [_Source(MEMORY_KEY + i, texts[i], (i,), todo[i]) for i in todo if i in texts]

    # --- writing summaries -------------------------------------------------------------------
    def _settle(self, sources: list[_Source]) -> None:
        """Keep current summaries; summarise the rest, store them in one batch, link, clean up."""
        fresh: list[tuple[_Source, str]] = []
        for src in sources:
            if any(x.source_hash == src.digest for x in self.summaries.get(src.key, [])):
                self._keep(src.key, src.digest, src.ids)
                continue
            try:
                text = shorten(self.summarizer.summarize(src.text, self.max_chars), self.max_chars)
            except SummarizerError as exc:
                self._fail(src.key, str(exc))
                continue
            if not text:
                self._fail(src.key, f"{self.summarizer.name} returned an empty summary")
                continue
            fresh.append((src, text))
        if not fresh:
            return
        now = self.engine.clock.now()
        limit = self.engine.settings.max_content_chars
        drafts = [
            check.draft(
                {"content": text, "importance": src.importance, "metadata": self._metadata(src),
                 "source": {"type": SUMMARY_TYPE, "url": src.key, "ingested_at": now}},
                limit,
            )
            for src, text in fresh
        ]  # fmt: skip
        vectors = self.engine.vectors_for(self.ns, drafts)
        with self.engine.writing("summarise", self.ns) as tx:  # new summaries in, old ones out, at once
            stored = tx.store(drafts, vectors)
            for (src, _), summary in zip(fresh, stored, strict=True):
                old = self.summaries.pop(src.key, [])
                wanted = self._metadata(src)
                same = next((x for x in old if x.id == summary.id), None)
                if same is not None:  # the same wording as before (the change was elsewhere)
                    tx.update(summary.id, {"meta": check.metadata(wanted), "importance": src.importance})
                    linked = same.linked
                elif summary.metadata != wanted:
                    # store() deduplicates by content: an identical memory exists, such as the summary
                    # of another copy of this document. Better no summary than one shared by two.
                    self.failed.append((src.key, f"its summary would repeat memory {summary.id}"))
                    continue
                else:
                    linked = set()
                self._link(tx, summary.id, src.ids, linked)
                self._forget(tx, (x for x in old if x is not same))
                self.created += 1

    def _fail(self, key: str, reason: str) -> None:
        self.summaries.pop(key, None)  # its old summary, if any, stays as it is
        self.failed.append((key, reason))

    def _metadata(self, src: _Source) -> dict[str, Any]:
        return {"summary_of": src.key, "source_hash": src.digest, "summarizer": self.summarizer.name}

    def _keep(self, key: str, digest: str, ids: Sequence[str]) -> None:
        """The source has a current summary: heal its links, forget any extra ones."""
        old = self.summaries.pop(key, [])
        current = next(x for x in old if x.source_hash == digest)
        extra = [x for x in old if x is not current]
        if extra or set(ids) - current.linked:
            with self.engine.writing("summarise", self.ns) as tx:
                self._link(tx, current.id, ids, current.linked)
                self._forget(tx, extra)
        self.unchanged += 1

    def _link(self, tx: Transaction, summary_id: str, ids: Sequence[str], linked: set[str]) -> None:
        for source_id in ids:
            if source_id not in linked:
                with contextlib.suppress(NotFoundError):  # forgotten meanwhile: the next run settles it
                    tx.link(summary_id, source_id, DERIVED_FROM, 1.0)

    def _forget(self, tx: Transaction, old: Iterable[_Summary]) -> None:
        for x in old:
            try:
                tx.forget(x.id)
            except NotFoundError:  # another run forgot it first
                continue
            self.replaced += 1

    def _forget_leftovers(self) -> None:
        """Summaries of sources not summarised this run: gone, or now too short to summarise.
        Such a summary stays only while it still matches its source's text."""
        keys = list(self.summaries)
        current: dict[str, str] = {}
        doc_keys = [k for k in keys if not k.startswith(MEMORY_KEY)]
        for batch in _batches(doc_keys):
            current.update((src.key, src.digest) for src in self._documents(batch))
        ids = [k.removeprefix(MEMORY_KEY) for k in keys if k.startswith(MEMORY_KEY)]
        for batch_ids in _batches(ids):
            q = sa.select(m.id, m.content_hash).where(live(self.ns), _single(), m.id.in_(batch_ids))
            with self.engine.reading("summarise", self.ns) as r:
                current.update((MEMORY_KEY + i, h) for i, h in r.conn.execute(q).tuples())
        stale: list[_Summary] = []
        for key in keys:
            digest = current.get(key)  # None: every source is gone
            old = self.summaries.pop(key)
            keep = next((x for x in old if digest is not None and x.source_hash == digest), None)
            stale.extend(x for x in old if x is not keep)
        if stale:
            with self.engine.writing("summarise", self.ns) as tx:
                self._forget(tx, stale)


def _summaries(conn: sa.Connection, ns: str) -> dict[str, list[_Summary]]:
    """The live summaries of ``ns`` by the key they summarise, with their derived_from links."""
    q = (
        sa.select(m.id, m.source_url, m.content_hash, m.meta)
        .where(live(ns), m.source_type == SUMMARY_TYPE)
        .order_by(m.seq)
    )
    out: dict[str, list[_Summary]] = {}
    by_id: dict[str, _Summary] = {}
    for row in conn.execute(q):
        meta = row.meta or {}
        if row.source_url is None or meta.get("summary_of") != row.source_url:
            continue  # a "summary" memory not written here: not ours to replace
        x = _Summary(row.id, row.content_hash, meta.get("source_hash"), set())
        out.setdefault(row.source_url, []).append(x)
        by_id[x.id] = x
    edges = (
        sa.select(links.c.source_id, links.c.target_id)
        .select_from(links.join(memories, m.id == links.c.source_id))
        .where(live(ns), m.source_type == SUMMARY_TYPE, links.c.kind == DERIVED_FROM)
    )
    for source_id, target_id in conn.execute(edges).tuples():
        if source_id in by_id:
            by_id[source_id].linked.add(target_id)
    return out


def _long_documents(conn: sa.Connection, ns: str, floor: int) -> list[str]:
    """Keys of the documents whose chunks, joined, are at least ``floor`` characters."""
    size = sa.func.sum(sa.func.length(m.content)) + 2 * (sa.func.count() - 1)  # "\n\n" between
    q = (
        sa.select(m.source_url)
        .where(live(ns), m.source_type.in_(DOCUMENT_TYPES), m.source_url.is_not(None))
        .group_by(m.source_url)
        .having(size >= floor)
        .order_by(m.source_url)
    )
    return list(conn.execute(q).scalars())


def _long_memories(conn: sa.Connection, ns: str, floor: int) -> list[tuple[str, str, float]]:
    """(id, content hash, importance) of single memories at least ``floor`` characters long."""
    q = (
        sa.select(m.id, m.content_hash, m.importance)
        .where(live(ns), _single(), sa.func.length(m.content) >= floor, ~m.encrypted)
        .order_by(m.seq)
    )
    return list(conn.execute(q).tuples())


def _single() -> sa.ColumnElement[bool]:
    """Memories that are neither a document's chunk nor a summary."""
    return sa.or_(
        m.source_type.is_(None),
        sa.and_(
            m.source_type != SUMMARY_TYPE,
            sa.or_(m.source_type.not_in(DOCUMENT_TYPES), m.source_url.is_(None)),
        ),
    )


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]
