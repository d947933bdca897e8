"""Sources -> memories, idempotently. Every connector hands its documents to ``ingest_document``.

A document is one source (a file, a web page, an API item), identified by ``type`` and ``key``
(an absolute path, a URL, an endpoint URL + ``#`` + item key). Its chunks are stored as one
thread, each memory carrying the source (type, key, chunk, ingested-at) and the document's
content hash. So ingesting a source again
- with the same content writes nothing (the hash matches);
- with changed content stores the new chunks and forgets the old ones that are gone, in one
  transaction (a crash leaves the old version or the new one, never a mix);
- after it vanished (``forget_source``) forgets its memories.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.connectors.chunking import chunk_markdown
from stellar_core.engine import Engine
from stellar_core.errors import PermanentError, ValidationError
from stellar_core.models import IngestResult, Memory, Who

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory


@dataclass(frozen=True)
class Document:
    """One source's text, ready to become memories."""

    type: str  # "file", "web", "api"
    key: str  # identity of the source: absolute path, URL, endpoint URL + "#" + item key
    text: str
    thread: str | None = None  # the memories' thread (a readable name); default: the key
    metadata: Mapping[str, Any] = field(default_factory=dict)  # copied onto every chunk


GROUP_CHUNKS = 256  # chunks stored per store_many: one embedding batch, one transaction


@dataclass(frozen=True)
class _Plan:
    doc: Document
    digest: str
    old: list[Memory]
    chunks: list[str]


def ingest_document(
    mem: StellarMemory,
    doc: Document,
    *,
    namespace: str | None = None,
    importance: float = 0.5,
    max_chars: int | None = None,
    principal: Who = None,
) -> IngestResult:
    """Store a document's chunks unless they are already there; replace a changed version.
    Raises ``PermanentError`` if the document cannot be stored (nothing stored is touched).
    ``principal``: who ingests (access control and the audit see them), default the memory's."""
    ns, who = mem.engine.scope(namespace, principal)
    plan = _plan(mem.engine, ns, doc, max_chars or mem.settings.chunk_max_chars, who)
    if isinstance(plan, IngestResult):
        return plan
    return _store(mem.engine, ns, [plan], importance, who)


def ingest_documents(
    mem: StellarMemory,
    docs: Iterable[Document],
    *,
    namespace: str | None = None,
    importance: float = 0.5,
    max_chars: int | None = None,
) -> IngestResult:
    """Many documents, the changed ones stored a group at a time: the embedding model is several
    times faster per text in one batch of 64 than in a document's three. A document that
    cannot be stored is reported in ``skipped``; the others go on."""
    engine = mem.engine
    ns, _ = engine.scope(namespace, None)
    limit = max_chars or mem.settings.chunk_max_chars
    result, group = IngestResult(), list[_Plan]()
    for doc in docs:
        try:
            plan = _plan(engine, ns, doc, limit)
        except PermanentError as exc:
            result += IngestResult(skipped=[(doc.key, str(exc))])
            continue
        if isinstance(plan, IngestResult):
            result += plan
            continue
        group.append(plan)
        if sum(len(p.chunks) for p in group) >= GROUP_CHUNKS:
            result += _store_isolating(engine, ns, group, importance)
            group = []
    return result + _store_isolating(engine, ns, group, importance)


def _plan(engine: Engine, ns: str, doc: Document, max_chars: int, who: Who = None) -> _Plan | IngestResult:
    """What storing ``doc`` takes, or the result if it is unchanged."""
    if len(doc.key) > check.MAX_SOURCE_URL:
        raise ValidationError(f"source key longer than {check.MAX_SOURCE_URL} characters")
    digest = check.content_hash(doc.text)
    with engine.reading("ingest", ns, who) as r:
        old = reads.source_memories(r.conn, ns, doc.type, doc.key)
    if old and all(x.metadata.get("source_hash") == digest for x in old):
        return IngestResult(sources=1, chunks=len(old), unchanged=1)
    chunks = chunk_markdown(doc.text, max_chars)
    if not chunks:
        raise ValidationError(f"{doc.key}: no text to store")
    return _Plan(doc, digest, old, chunks)


def _store_isolating(engine: Engine, ns: str, group: list[_Plan], importance: float) -> IngestResult:
    """Store a group; if it is refused, store its documents one by one to find the bad one."""
    if not group:
        return IngestResult()
    try:
        return _store(engine, ns, group, importance)
    except PermanentError:
        if len(group) == 1:
            raise
    result = IngestResult()
    for plan in group:
        try:
            result += _store(engine, ns, [plan], importance)
        except PermanentError as exc:
            result += IngestResult(skipped=[(plan.doc.key, str(exc))])
    return result


def _store(engine: Engine, ns: str, group: list[_Plan], importance: float, who: Who = None) -> IngestResult:
    """The group's new chunks stored and the old chunks that are gone forgotten, in one
    transaction: a crash leaves each document's old version or its new one."""
    now = engine.clock.now()
    items = [
        {
            "content": chunk,
            "importance": importance,
            "thread": p.doc.thread or _thread_name(p.doc.key),
            "position": i,
            "metadata": {**p.doc.metadata, "source_hash": p.digest},
            "source": {"type": p.doc.type, "url": p.doc.key, "chunk": i, "ingested_at": now},
        }
        for p in group
        for i, chunk in enumerate(p.chunks)
    ]
    drafts = [check.draft(item, engine.settings.max_content_chars) for item in items]
    vectors = engine.vectors_for(ns, drafts)
    result = IngestResult()
    with engine.writing("ingest", ns, who) as tx:
        stored = iter(tx.store(drafts, vectors))
        for p in group:
            mine = [next(stored) for _ in p.chunks]
            before = {x.id for x in p.old}
            for x in {x.id: x for x in mine}.values():  # chunks that were already there: now current
                if x.id in before and x.metadata.get("source_hash") != p.digest:
                    tx.update(x.id, {"meta": check.metadata({**x.metadata, "source_hash": p.digest})})
            kept = {x.id for x in mine}
            stale = [x for x in p.old if x.id not in kept]
            for x in stale:
                tx.forget(x.id)
            result += IngestResult(
                sources=1, chunks=len(p.chunks), new=len(kept - before), replaced=len(stale)
            )
    return result


def forget_source(mem: StellarMemory, source_type: str, key: str, namespace: str | None = None) -> int:
    """Forget every memory of a source that is gone, in one transaction; how many were forgotten."""
    with mem.engine.writing("ingest", namespace) as tx:
        gone = reads.source_memories(tx.conn, tx.namespace, source_type, key)
        for x in gone:
            tx.forget(x.id)
    return len(gone)


def source_memories(
    mem: StellarMemory, source_type: str, key: str, namespace: str | None = None
) -> list[Memory]:
    """The live memories of one source, in chunk order."""
    with mem.engine.reading("ingest", namespace) as r:
        return reads.source_memories(r.conn, r.namespace, source_type, key)


def source_keys(
    mem: StellarMemory, source_type: str, namespace: str | None = None, prefix: str = ""
) -> set[str]:
    """Keys of the sources of a type that have live memories (optionally under a key prefix)."""
    with mem.engine.reading("ingest", namespace) as r:
        return reads.source_keys(r.conn, r.namespace, source_type, prefix)


def _thread_name(key: str) -> str:
    """The key, shortened (kept unique by a hash) where it is longer than a thread name may be."""
    if len(key) <= 256:
        return key
    return f"{key[:200]}…{hashlib.sha256(key.encode()).hexdigest()[:32]}"
