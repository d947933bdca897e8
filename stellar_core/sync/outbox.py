"""The change log (outbox): one row per change, written in the change's own transaction.

It is the source of truth for other processes: vector indexes catch up from it, and the
sync issue publishes it to Redis Streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from stellar_core.models import ChangeEvent
from stellar_core.store.dialect import Dialect
from stellar_core.store.schema import changes


def record(conn: sa.Connection, dialect: Dialect, events: Sequence[dict[str, Any]]) -> None:
    """Append change events (dicts of namespace, memory_id, op, agent, hlc, vector_clock,
    payload, created_at)."""
    dialect.insert_many(conn, changes, events)


def since(conn: sa.Connection, namespace: str, seq: int) -> list[tuple[int, str, str]]:
    """(seq, memory_id, op) of the namespace's changes after ``seq``, oldest first."""
    return [(int(s), mid, op) for s, mid, op in conn.execute(_SINCE, {"namespace": namespace, "seq": seq})]


# Built once: every recall polls it.
_SINCE = (
    sa.select(changes.c.seq, changes.c.memory_id, changes.c.op)
    .where(changes.c.namespace == sa.bindparam("namespace"), changes.c.seq > sa.bindparam("seq"))
    .order_by(changes.c.seq)
)


def last_seq(conn: sa.Connection, namespace: str) -> int:
    """Newest change seq of the namespace (0 if none)."""
    c = changes.c
    return int(conn.execute(sa.select(sa.func.max(c.seq)).where(c.namespace == namespace)).scalar() or 0)


def newest(conn: sa.Connection, namespace: str, after: int, limit: int) -> list[ChangeEvent]:
    """The namespace's newest ``limit`` changes with a seq above ``after``, newest first."""
    c = changes.c
    q = (
        sa.select(c.seq, c.namespace, c.memory_id, c.op, c.agent, c.hlc, c.created_at, c.payload)
        .where(c.namespace == namespace, c.seq > after)
        .order_by(c.seq.desc())
        .limit(limit)
    )
    return [
        ChangeEvent(
            int(r.seq), r.namespace, r.memory_id, r.op, r.agent, r.hlc, r.created_at, dict(r.payload or {})
        )
        for r in conn.execute(q)
    ]
