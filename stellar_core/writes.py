"""The write path inside the caller's transaction: new, updated, forgotten and restored memories
with their tags, vectors, full-text rows and change events."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core import graph
from stellar_core.errors import NotFoundError, ValidationError
from stellar_core.models import Link, Memory, Principal
from stellar_core.scoring import ZonePolicy, memory_score
from stellar_core.search import lexical
from stellar_core.settings import Settings
from stellar_core.store.dialect import Dialect, in_json_list, json_texts
from stellar_core.store.records import fetch, live, m, put_tags, to_row
from stellar_core.store.schema import memories, memory_tags, memory_vectors
from stellar_core.sync import outbox
from stellar_core.sync.clock import bump
from stellar_core.validation import Draft


def new_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits.

    Time-ordered: new ids land at the end of the id index instead of on a random page of
    it, which keeps batch inserts into a large namespace fast (measured: ~12% at 100k).
    """
    ms = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(os.urandom(10), "big")
    value = ms << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return f"{value:032x}"


def from_drafts(
    conn: sa.Connection,
    ns: str,
    who: Principal,
    drafts: Sequence[Draft],
    policy: ZonePolicy,
    s: Settings,
    now: float,
    stamp: Callable[[], str],
) -> tuple[list[Memory], list[int]]:
    """The memory for each draft, and the indexes of the drafts that are new.

    A draft whose (thread, content) exists already in the namespace, or earlier in the batch,
    gets that memory (exact dedup). New ones without a position follow their thread's last one.
    """
    hashes = json_texts({d.content_hash for d in drafts})  # live(ns) + hash: the dedup index
    found = fetch(conn, live(ns) & in_json_list(m.content_hash, "hashes", texts=True), {"hashes": hashes})
    by_key = {(x.thread, x.content_hash): x for x in found.values()}
    next_pos = _next_positions(conn, ns, {d.thread for d in drafts if d.thread is not None})
    out: list[Memory] = []
    new: list[int] = []
    for i, d in enumerate(drafts):
        key = (d.thread, d.content_hash)
        if key not in by_key:
            pos = d.position
            if d.thread is not None:
                pos = next_pos[d.thread] if pos is None else pos
                next_pos[d.thread] = max(next_pos[d.thread], pos + 1)
            score = memory_score(0, 0.0, d.importance, s)
            by_key[key] = Memory(
                id=new_id(), namespace=ns, content=d.content, content_hash=d.content_hash,
                importance=d.importance, pinned=d.pinned, recall_count=0, created_at=now,
                updated_at=now, last_recalled_at=None, last_access_at=now,
                zone=policy.zone_for(score), score=score, tags=d.tags, metadata=d.metadata,
                source=d.source, thread=d.thread, position=pos, origin_agent=who.id,
                hlc=stamp(), vector_clock={who.id: 1},
            )  # fmt: skip
            new.append(i)
        out.append(by_key[key])
    return out, new


def insert(
    conn: sa.Connection,
    dialect: Dialect,
    who: Principal,
    rows: Sequence[tuple[Memory, np.ndarray]],
    op: str,
    now: float,
    window: int,
) -> None:
    """Insert memories (all of one namespace) with tags, change events and full-text rows."""
    if not rows:
        return
    seqs = dialect.insert_keyed(conn, memories, [to_row(x) for x, _ in rows])
    dialect.insert_many(
        conn,
        memory_vectors,
        [{"seq": seq, "embedding": vec} for seq, (_, vec) in zip(seqs, rows, strict=True)],
    )
    put_tags(conn, dialect, ((seq, t) for (x, _), seq in zip(rows, seqs, strict=True) for t in x.tags))
    outbox.record(
        conn,
        dialect,
        [
            {"namespace": x.namespace, "memory_id": x.id, "op": op, "agent": who.id,
             "hlc": x.hlc, "vector_clock": x.vector_clock, "payload": x.to_dict(),
             "created_at": now}
            for x, _ in rows
        ],
    )  # fmt: skip
    lexical.reindex(conn, dialect, rows[0][0].namespace, seqs, window)


def _next_positions(conn: sa.Connection, ns: str, threads: set[str]) -> dict[str, int]:
    """For each thread, the position after its last memory (0 for a new thread)."""
    if not threads:
        return {}
    q = (
        sa.select(m.thread, sa.func.max(m.position))
        .where(m.namespace == ns, m.thread.in_(threads))
        .group_by(m.thread)
    )
    found = dict(conn.execute(q).tuples().all())
    return {t: (found[t] + 1 if found.get(t) is not None else 0) for t in threads}


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


def event(
    x: Memory, op: str, who: Principal, stamp: str, vc: dict[str, int], payload: dict[str, Any], now: float
) -> dict[str, Any]:
    """A change-log row about memory ``x``."""
    return {
        "namespace": x.namespace, "memory_id": x.id, "op": op, "agent": who.id, "hlc": stamp,
        "vector_clock": vc, "payload": payload, "created_at": now,
    }  # fmt: skip


def update(
    conn: sa.Connection,
    dialect: Dialect,
    ns: str,
    who: Principal,
    memory_id: str,
    values: dict[str, Any],
    tags: Sequence[str] | None,
    vector: np.ndarray | None,
    stamp: Callable[[], str],
    now: float,
    window: int,
) -> Memory:
    """Write checked new column ``values`` (and tags, and a new content's vector) of a memory."""
    seq, current = live_memory(conn, ns, memory_id, lock=True)
    vc = bump(current.vector_clock, who.id)
    values = {**values, "updated_at": now, "last_access_at": now, "hlc": stamp(), "vector_clock": vc}
    try:
        conn.execute(memories.update().where(m.seq == seq).values(**values))
    except sa.exc.IntegrityError as exc:
        raise ValidationError("an identical memory already exists in this thread") from exc
    if tags is not None:
        conn.execute(memory_tags.delete().where(memory_tags.c.memory_seq == seq))
        put_tags(conn, dialect, ((seq, t) for t in tags))
    if vector is not None:
        conn.execute(memory_vectors.update().where(memory_vectors.c.seq == seq).values(embedding=vector))
        lexical.reindex(conn, dialect, ns, [seq], window)
    updated = fetch(conn, m.seq == seq)[seq]
    # Column names to Memory fields ("meta" is the column of ``metadata``).
    changed = {"metadata" if k == "meta" else k for k in values} - {"updated_at", "last_access_at"}
    changed.add("tags")
    payload = {k: v for k, v in updated.to_dict().items() if k in changed}
    outbox.record(conn, dialect, [event(updated, "update", who, updated.hlc, vc, payload, now)])
    return updated


def forget(
    conn: sa.Connection,
    dialect: Dialect,
    ns: str,
    who: Principal,
    memory_id: str,
    stamp: Callable[[], str],
    now: float,
    window: int,
) -> Memory:
    """Make a memory a tombstone and take its words out of the full-text index, its own and
    its thread neighbours' context."""
    seq, current = live_memory(conn, ns, memory_id, lock=True)
    vc, hlc = bump(current.vector_clock, who.id), stamp()
    conn.execute(memories.update().where(m.seq == seq).values(deleted_at=now, hlc=hlc, vector_clock=vc))
    dialect.text_index_drop(conn, ns, [seq])
    th, pos = current.thread, current.position
    place = [(th, pos)] if th is not None and pos is not None else []
    lexical.reindex(conn, dialect, ns, lexical.neighbours(conn, ns, place, window), window)
    outbox.record(conn, dialect, [event(current, "forget", who, hlc, vc, {"reason": "requested"}, now)])
    return replace(current, deleted_at=now, hlc=hlc, vector_clock=vc)


def restore(
    conn: sa.Connection,
    dialect: Dialect,
    ns: str,
    who: Principal,
    rows: Sequence[tuple[Memory, np.ndarray]],
    edges: Sequence[Link],
    stamp: Callable[[], str],
    now: float,
    window: int,
) -> tuple[int, int]:
    """Insert complete memories as they are, and links between live ones; returns how many of
    each were added. A memory whose id is taken or whose content its thread holds is skipped."""
    taken = set(conn.execute(sa.select(m.id).where(m.id.in_({x.id for x, _ in rows}))).scalars())
    hashes = {x.content_hash for x, _ in rows}
    keys = set(
        conn.execute(sa.select(m.thread, m.content_hash).where(live(ns), m.content_hash.in_(hashes))).tuples()
    )
    new = []
    for x, vec in rows:
        if x.id in taken or (x.thread, x.content_hash) in keys or x.forgotten:
            continue
        taken.add(x.id)
        keys.add((x.thread, x.content_hash))
        new.append((x, vec))
    insert(conn, dialect, who, new, "import", now, window)
    added = graph.put_new(conn, dialect, ns, edges)
    outbox.record(conn, dialect, [
        {"namespace": ns, "memory_id": e.source_id, "op": "link", "agent": who.id, "hlc": stamp(),
         "vector_clock": {}, "created_at": now,
         "payload": {"target_id": e.target_id, "kind": e.kind, "weight": e.weight}}
        for e in added
    ])  # fmt: skip
    return len(new), len(added)
