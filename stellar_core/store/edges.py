"""Links between memories: typed, weighted, directed edges, queryable both ways."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from stellar_core.models import Link
from stellar_core.store.dialect import Dialect
from stellar_core.store.records import live, m
from stellar_core.store.schema import links, memories

c = links.c

# A summary memory (source type ``summary``) links ``derived_from`` each memory it was made
# from: it holds their text, so it is purged with them.
SUMMARY_TYPE = "summary"
DERIVED_FROM = "derived_from"


def put(conn: sa.Connection, dialect: Dialect, ns: str, link: Link, stamp: str | None = None) -> Link:
    """Create the edge, or set the weight of an existing (source, target, kind) edge;
    ``stamp``: the write's place in last-writer-wins order (sync)."""
    row = {"namespace": ns, **vars(link), "stamp": stamp}
    stmt = (
        dialect.insert(links)
        .values(**row)
        .on_conflict_do_update(
            index_elements=["source_id", "target_id", "kind"], set_={"weight": link.weight, "stamp": stamp}
        )
        .returning(c.created_at)
    )
    created_at = conn.execute(stmt).scalar_one()
    return Link(link.source_id, link.target_id, link.kind, link.weight, created_at)


def put_new(conn: sa.Connection, dialect: Dialect, ns: str, edges: Sequence[Link]) -> list[Link]:
    """Insert edges between live memories of ``ns`` that do not exist yet; returns those added."""
    ends = {e.source_id for e in edges} | {e.target_id for e in edges}
    alive = set(conn.execute(sa.select(m.id).where(live(ns), m.id.in_(ends))).scalars())
    added = []
    # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING.
    stmt = dialect.insert(links).on_conflict_do_nothing().returning(links.c.kind)
    for e in edges:
        live_ends = e.source_id in alive and e.target_id in alive
        if live_ends and conn.execute(stmt.values(namespace=ns, **vars(e))).first() is not None:
            added.append(e)
    return added


def around(conn: sa.Connection, ns: str, memory_id: str, direction: str, kind: str | None) -> list[Link]:
    """Edges from (``out``), to (``in``) or either way (``both``) of a memory, live ends only."""
    ends = {"out": c.source_id == memory_id, "in": c.target_id == memory_id}
    touching = ends[direction] if direction != "both" else sa.or_(*ends.values())
    q = _live_edges(ns).where(touching)
    if kind is not None:
        q = q.where(c.kind == kind)
    rows = conn.execute(q.order_by(c.created_at)).all()
    return [Link(r.source_id, r.target_id, r.kind, r.weight, r.created_at) for r in rows]


def summaries_of(conn: sa.Connection, ns: str, ids: Sequence[str]) -> list[tuple[str, bool]]:
    """(id, forgotten) of the summaries made from any of these memories."""
    q = (
        sa.select(m.id, m.deleted_at.is_not(None))
        .join_from(links, memories, m.id == c.source_id)
        .where(c.target_id.in_(ids), c.kind == DERIVED_FROM, m.namespace == ns, m.source_type == SUMMARY_TYPE)
        .distinct()
    )
    return [(i, bool(gone)) for i, gone in conn.execute(q).tuples()]


def count(conn: sa.Connection, ns: str) -> int:
    """Edges of ``ns`` whose two ends are live."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(_live_edges(ns).subquery())).scalar_one())


def _live_edges(ns: str) -> sa.Select[tuple[str, str, str, float, float]]:
    src, dst = memories.alias("src"), memories.alias("dst")
    return (
        sa.select(c.source_id, c.target_id, c.kind, c.weight, c.created_at)
        .join(src, sa.and_(src.c.id == c.source_id, src.c.deleted_at.is_(None)))
        .join(dst, sa.and_(dst.c.id == c.target_id, dst.c.deleted_at.is_(None)))
        .where(c.namespace == ns)
    )
