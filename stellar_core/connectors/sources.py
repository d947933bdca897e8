"""Sources -> memories, idempotently. Every connector hands its documents to ``ingest_document``.

A document is one source (a file, a web page, an API item), identified by ``type`` and ``key``
(an absolute path, a URL, an endpoint URL + ``#`` + item key). Its chunks are stored as one
thread, each memory carrying the source (type, key, chunk, ingested-at) and the document's
content hash. So ingesting a source again
- with the same content writes nothing (the hash matches);
- with changed content stores the new chunks, then forgets the old ones that are gone
  (in that order: a failure in between leaves both, never neither, and the next run heals it);
- after it vanished (``forget_source``) forgets its memories.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.connectors.chunking import chunk_markdown
from stellar_core.errors import ValidationError
from stellar_core.memory import StellarMemory
from stellar_core.models import IngestResult, Memory
from stellar_core.store.records import fetch, live, m


@dataclass(frozen=True)
class Document:
    """One source's text, ready to become memories."""

    type: str  # "file", "web", "api"
    key: str  # identity of the source: absolute path, URL, endpoint URL + "#" + item key
    text: str
    thread: str | None = None  # the memories' thread (a readable name); default: the key
    metadata: Mapping[str, Any] = field(default_factory=dict)  # copied onto every chunk


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ingest_document(
    mem: StellarMemory,
    doc: Document,
    *,
    namespace: str | None = None,
    importance: float = 0.5,
    max_chars: int | None = None,
) -> IngestResult:
    """Store a document's chunks unless they are already there; replace a changed version."""
    ns = _namespace(mem, namespace)
    digest = content_hash(doc.text)
    old = source_memories(mem, doc.type, doc.key, ns)
    if old and all(x.metadata.get("source_hash") == digest for x in old):
        return IngestResult(sources=1, chunks=len(old), unchanged=1)
    chunks = chunk_markdown(doc.text, max_chars or mem.settings.chunk_max_chars)
    if not chunks:
        raise ValidationError(f"{doc.key}: no text to store")
    metadata = {**doc.metadata, "source_hash": digest}
    now = mem.clock.now()
    items = [
        {
            "content": chunk,
            "importance": importance,
            "thread": doc.thread or _thread_name(doc.key),
            "position": i,
            "metadata": metadata,
            "source": {"type": doc.type, "url": doc.key, "chunk": i, "ingested_at": now},
        }
        for i, chunk in enumerate(chunks)
    ]
    stored = mem.store_many(items, namespace=ns)
    before = {x.id for x in old}
    for x in {x.id: x for x in stored}.values():  # chunks that were already there: now current
        if x.id in before and x.metadata.get("source_hash") != digest:
            mem.update(x.id, metadata={**x.metadata, **metadata}, namespace=ns)
    kept = {x.id for x in stored}
    stale = [x for x in old if x.id not in kept]
    for x in stale:
        mem.forget(x.id, namespace=ns)
    return IngestResult(sources=1, chunks=len(chunks), new=len(kept - before), replaced=len(stale))


def forget_source(mem: StellarMemory, source_type: str, key: str, namespace: str | None = None) -> int:
    """Forget every memory of a source that is gone; how many were forgotten."""
    ns = _namespace(mem, namespace)
    gone = source_memories(mem, source_type, key, ns)
    for x in gone:
        mem.forget(x.id, namespace=ns)
    return len(gone)


def source_memories(mem: StellarMemory, source_type: str, key: str, namespace: str) -> list[Memory]:
    """The live memories of one source, in chunk order."""
    with mem.db.read() as conn:
        found = fetch(conn, sa.and_(live(namespace), m.source_url == key, m.source_type == source_type))
    return sorted(found.values(), key=lambda x: (x.source.chunk if x.source else None) or 0)


def source_keys(
    mem: StellarMemory, source_type: str, namespace: str | None = None, prefix: str = ""
) -> set[str]:
    """Keys of the sources of a type that have live memories (optionally under a key prefix)."""
    ns = _namespace(mem, namespace)
    q = sa.select(m.source_url).where(live(ns), m.source_type == source_type).distinct()
    if prefix:
        q = q.where(m.source_url.startswith(prefix, autoescape=True))
    with mem.db.read() as conn:
        return {key for key in conn.execute(q).scalars() if key is not None}


def _thread_name(key: str) -> str:
    """The key, shortened (kept unique by a hash) where it is longer than a thread name may be."""
    if len(key) <= 256:
        return key
    return f"{key[:200]}…{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _namespace(mem: StellarMemory, namespace: str | None) -> str:
    return mem.namespace if namespace is None else check.namespace(namespace)
