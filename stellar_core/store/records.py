"""Rows of the memories table to ``Memory`` objects and back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from stellar_core.errors import NotFoundError, ValidationError
from stellar_core.models import Memory, Source, Zone
from stellar_core.store.dialect import Dialect, in_json_list, json_list
from stellar_core.store.schema import memories, memory_tags

m = memories.c

MEMORY_COLUMNS = list(memories.c)


# The fields sync merges as last-writer-wins registers, with the columns each one covers.
REGISTERS: dict[str, tuple[str, ...]] = {
    "content": ("content", "content_hash", "key_id", "search_text"),
    "importance": ("importance",),
    "pinned": ("pinned",),
    "metadata": ("meta",),
    "tags": (),
}
_REGISTER_OF = {col: name for name, cols in REGISTERS.items() for col in cols}


def registers(columns: Iterable[str]) -> set[str]:
    """The registers that writing these columns changes."""
    return {_REGISTER_OF[c] for c in columns if c in _REGISTER_OF}


def stamp_of(hlc: str, agent: str, count: int = 0) -> str:
    """A write's place in last-writer-wins order: by hybrid logical clock, then agent id (the
    clock's fixed-width text sorts as its time); ``count``, the agent's entry in the vector
    clock it wrote, tells who has seen the write."""
    return f"{hlc} {agent} {count}"


def parse_stamp(stamp: str) -> tuple[str, str, int]:
    """(hlc, agent, count) of a ``stamp_of``."""
    hlc, rest = stamp.split(" ", 1)
    agent, _, count = rest.rpartition(" ")
    return hlc, agent, int(count) if count.isdigit() else 0


def live(namespace: str) -> sa.ColumnElement[bool]:
    """The namespace partition, minus tombstones."""
    return sa.and_(m.namespace == namespace, m.deleted_at.is_(None))


def to_memory(row: sa.Row[Any], tags: Sequence[str] = ()) -> Memory:
    """A ``Memory`` from a row of ``MEMORY_COLUMNS``."""
    r = row._mapping
    source = None
    if r["source_type"] is not None:
        source = Source(r["source_type"], r["source_url"], r["source_chunk"], r["ingested_at"])
    return Memory(
        id=r["id"],
        namespace=r["namespace"],
        content=r["content"],
        content_hash=r["content_hash"],
        importance=r["importance"],
        pinned=bool(r["pinned"]),
        recall_count=r["recall_count"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        last_recalled_at=r["last_recalled_at"],
        last_access_at=r["last_access_at"],
        zone=Zone(r["zone"]),
        score=r["score"],
        tags=tuple(sorted(tags)),
        metadata=dict(r["meta"] or {}),
        source=source,
        thread=r["thread"],
        position=r["position"],
        encrypted=bool(r["encrypted"]),
        key_id=r["key_id"],
        origin_agent=r["origin_agent"],
        hlc=r["hlc"],
        vector_clock=dict(r["vector_clock"] or {}),
        deleted_at=r["deleted_at"],
    )


def to_row(mem: Memory, search_text: str | None = None) -> dict[str, Any]:
    """Column values for a ``Memory`` (without seq); ``search_text``: what the full-text
    index is to hold instead of its content (an encrypted memory's keyed words)."""
    src = mem.source
    return {
        "id": mem.id,
        "namespace": mem.namespace,
        "content": mem.content,
        "content_hash": mem.content_hash,
        "importance": mem.importance,
        "pinned": mem.pinned,
        "recall_count": mem.recall_count,
        "created_at": mem.created_at,
        "updated_at": mem.updated_at,
        "last_recalled_at": mem.last_recalled_at,
        "last_access_at": mem.last_access_at,
        "zone": mem.zone.value,
        "score": mem.score,
        "meta": mem.metadata,
        "source_type": src.type if src else None,
        "source_url": src.url if src else None,
        "source_chunk": src.chunk if src else None,
        "ingested_at": src.ingested_at if src else None,
        "thread": mem.thread,
        "position": mem.position,
        "encrypted": mem.encrypted,
        "key_id": mem.key_id,
        "origin_agent": mem.origin_agent,
        "hlc": mem.hlc,
        "vector_clock": mem.vector_clock,
        "deleted_at": mem.deleted_at,
        "search_text": search_text,
    }


def fetch(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    params: dict[str, Any] | None = None,
    *,
    order_by: Sequence[sa.ColumnElement[Any]] = (),
    limit: int | None = None,
    offset: int = 0,
    lock: bool = False,
) -> dict[int, Memory]:
    """Memories matching ``where`` (with its bound ``params``), keyed by seq in ``order_by``'s
    order, with their tags. ``lock``: their rows stay locked until the transaction ends (a
    write that reads a row to change it; SQLite's writer holds the whole database anyway)."""
    q = sa.select(m.seq, *MEMORY_COLUMNS).where(where).order_by(*order_by).limit(limit).offset(offset)
    if lock:
        q = q.with_for_update()
    return _with_tags(conn, conn.execute(q, params).all())


def live_memory(conn: sa.Connection, ns: str, memory_id: Any, lock: bool = False) -> tuple[int, Memory]:
    """(seq, memory) of a live memory of the namespace; ``NotFoundError`` otherwise. ``lock``
    before changing it: a concurrent writer waits, and sees a memory forgotten meanwhile as
    gone (PostgreSQL re-checks the row it waited for), so no change is lost or lands on a
    tombstone."""
    if not isinstance(memory_id, str):
        raise ValidationError(f"memory id must be a string, not {type(memory_id).__name__}")
    found = fetch(conn, live(ns) & (m.id == memory_id), lock=lock)
    if not found:
        raise NotFoundError(f"no memory {memory_id!r} in namespace {ns!r}")
    return next(iter(found.items()))


def version_of(x: Memory) -> tuple[Any, ...]:
    """Every write stamps ``hlc``; recall statistics and reorbit change the rest."""
    return (x.hlc, x.recall_count, x.last_access_at, x.score, x.zone.value)


# What changes whenever a live memory does (``version_of`` its ``Memory``): by id and namespace.
VERSION = sa.select(m.hlc, m.recall_count, m.last_access_at, m.score, m.zone).where(
    m.id == sa.bindparam("id"), m.namespace == sa.bindparam("ns"), m.deleted_at.is_(None)
)


def fetch_seqs(conn: sa.Connection, seqs: Sequence[int]) -> dict[int, Memory]:
    """Memories by seq (the recall path: one prepared statement whatever the seqs)."""
    return _with_tags(conn, conn.execute(_BY_SEQS, {"seqs": json_list(seqs)}).all()) if seqs else {}


def _with_tags(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> dict[int, Memory]:
    if not rows:
        return {}
    tags: dict[int, list[str]] = {}
    for seq, tag in conn.execute(_TAGS_OF, {"seqs": json_list([r.seq for r in rows])}):
        tags.setdefault(seq, []).append(tag)
    return {r.seq: to_memory(r, tags.get(r.seq, ())) for r in rows}


_BY_SEQS = sa.select(m.seq, *MEMORY_COLUMNS).where(in_json_list(m.seq, "seqs"))
_TAGS_OF = sa.select(memory_tags.c.memory_seq, memory_tags.c.tag).where(
    in_json_list(memory_tags.c.memory_seq, "seqs")
)


def put_tags(conn: sa.Connection, dialect: Dialect, pairs: Iterable[tuple[int, str]]) -> None:
    """Insert (seq, tag) pairs."""
    dialect.insert_many(conn, memory_tags, [{"memory_seq": s, "tag": t} for s, t in pairs])
