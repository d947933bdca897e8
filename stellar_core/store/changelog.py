"""The change log (outbox): one ``ChangeEvent`` per change, written in the change's own
transaction, and built here only (``event``).

It is the source of truth for other processes: vector indexes catch up from it, and the sync
issue publishes it to Redis Streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from stellar_core.models import ChangeEvent, Memory, Op
from stellar_core.store.dialect import Dialect
from stellar_core.store.schema import changes

c = changes.c


def event(
    x: Memory | tuple[str, str],
    op: Op,
    agent: str,
    hlc: str,
    now: float,
    payload: dict[str, Any] | None = None,
    vector_clock: dict[str, int] | None = None,
) -> ChangeEvent:
    """A change to memory ``x`` (or to a (namespace, id) pair), not yet written; the vector
    clock is the memory's unless another is given."""
    namespace, memory_id = (x.namespace, x.id) if isinstance(x, Memory) else x
    clock = vector_clock if vector_clock is not None else x.vector_clock if isinstance(x, Memory) else {}
    return ChangeEvent(0, namespace, memory_id, op, agent, hlc, now, payload or {}, dict(clock))


UNSHARED = frozenset({Op.PURGE})  # each replica purges its own tombstones when their time comes


def record(
    conn: sa.Connection, dialect: Dialect, events: Sequence[ChangeEvent], origin: Sequence[str] | None = None
) -> None:
    """Append events to the log, in this order. This database's own wait to be published;
    events applied from another replica (``origin``: their ids there) are not published again."""
    rows = [
        {"namespace": e.namespace, "memory_id": e.memory_id, "op": e.op.value, "agent": e.agent, "hlc": e.hlc,
         "vector_clock": e.vector_clock, "payload": e.payload, "created_at": e.created_at,
         "origin": origin[i] if origin else None, "pending": None if origin or e.op in UNSHARED else True}
        for i, e in enumerate(events)
    ]  # fmt: skip
    dialect.insert_many(conn, changes, rows)


SCRUBBED = {"scrubbed": True}  # the payload of an event whose memory was purged


def scrub(conn: sa.Connection, namespace: str, memory_ids: Sequence[str]) -> list[str]:
    """Empty the payloads of these memories' events (they are being purged): the events stay,
    so whoever follows the log stays in step, but none holds what the memories said. Returns
    the texts the payloads held (their words leave the full-text statistics too)."""
    texts: list[str] = []
    for i in range(0, len(memory_ids), 500):
        theirs = (c.namespace == namespace) & c.memory_id.in_(memory_ids[i : i + 500])
        for payload in conn.execute(sa.select(c.payload).where(theirs)).scalars():
            content = (payload or {}).get("content")
            if isinstance(content, str):
                texts.append(content)
        conn.execute(changes.update().where(theirs).values(payload=SCRUBBED))
    return texts


def since(conn: sa.Connection, namespace: str, seq: int) -> list[tuple[int, str, str]]:
    """(seq, memory_id, op) of the namespace's changes after ``seq``, oldest first."""
    return [(int(s), mid, op) for s, mid, op in conn.execute(_SINCE, {"namespace": namespace, "seq": seq})]


# Built once: every recall polls it.
_SINCE = (
    sa.select(c.seq, c.memory_id, c.op)
    .where(c.namespace == sa.bindparam("namespace"), c.seq > sa.bindparam("seq"))
    .order_by(c.seq)
)


def last_seq(conn: sa.Connection, namespace: str) -> int:
    """Newest change seq of the namespace (0 if none)."""
    return int(conn.execute(sa.select(sa.func.max(c.seq)).where(c.namespace == namespace)).scalar() or 0)


def newest(conn: sa.Connection, namespace: str, after: int, limit: int) -> list[ChangeEvent]:
    """The namespace's newest ``limit`` changes with a seq above ``after``, newest first."""
    q = sa.select(changes).where(c.namespace == namespace, c.seq > after).order_by(c.seq.desc()).limit(limit)
    return _events(conn.execute(q))


def following(conn: sa.Connection, namespace: str, after: int, limit: int) -> list[ChangeEvent]:
    """The namespace's next ``limit`` changes after ``after``, oldest first: a follower
    (the HTTP API's event stream) passes the last seq it handed on, and misses none."""
    q = sa.select(changes).where(c.namespace == namespace, c.seq > after).order_by(c.seq).limit(limit)
    return _events(conn.execute(q))


def _events(rows: sa.CursorResult[Any]) -> list[ChangeEvent]:
    return [
        ChangeEvent(int(r.seq), r.namespace, r.memory_id, Op(r.op), r.agent, r.hlc, r.created_at,
                    dict(r.payload or {}), dict(r.vector_clock or {}))
        for r in rows
    ]  # fmt: skip
