"""The read queries, each inside a read the engine opened: memories by id, thread and page,
statistics, namespaces, zone settings, sources, and the database's own key-value records.
(The recall pipeline is ``search/``; the writes are ``writes.py``.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from stellar_core.models import Link, Memory, Stats, Zone
from stellar_core.scoring import ZonePolicy
from stellar_core.settings import Settings
from stellar_core.store import edges
from stellar_core.store.dialect import in_json_list, json_list, json_texts
from stellar_core.store.records import fetch, live, live_memory, m
from stellar_core.store.schema import (
    changes,
    links,
    memories,
    memory_tags,
    memory_vectors,
    meta,
    namespace_config,
    recall_counts,
)

__all__ = ["live_memory"]  # (with every function below)


def thread(conn: sa.Connection, ns: str, name: str) -> list[Memory]:
    """The live memories of a thread in position order."""
    found = fetch(conn, sa.and_(live(ns), m.thread == name))
    return sorted(found.values(), key=lambda x: (x.position is None, x.position or 0))


def page(conn: sa.Connection, ns: str, zones: Iterable[Zone] | None, limit: int, offset: int) -> list[Memory]:
    """Live memories, highest score first, optionally only those in ``zones``."""
    where = live(ns)
    if zones is not None:
        where = sa.and_(where, m.zone.in_([z.value for z in zones]))
    return list(fetch(conn, where, order_by=(m.score.desc(), m.seq), limit=limit, offset=offset).values())


def stats(conn: sa.Connection, ns: str) -> Stats:
    """Counts, zone sizes and mean score of a namespace, in one pass over it."""
    alive = m.deleted_at.is_(None)
    per_zone = (
        sa.select(m.zone, sa.func.count().filter(alive), sa.func.sum(m.score).filter(alive),
                  sa.func.count().filter(~alive))
        .where(m.namespace == ns)
        .group_by(m.zone)
    )  # fmt: skip
    zones, total, forgotten = dict.fromkeys(Zone, 0), 0.0, 0
    for zone, n_live, score_sum, n_forgotten in conn.execute(per_zone):
        zones[Zone(zone)] = int(n_live)
        total += float(score_sum or 0.0)
        forgotten += int(n_forgotten)
    n_links = edges.count(conn, ns)
    threads = conn.execute(sa.select(sa.func.count(sa.distinct(m.thread))).where(live(ns))).scalar()
    n = sum(zones.values())
    return Stats(ns, n, forgotten, int(n_links or 0), int(threads or 0), zones, total / n if n else 0.0)


def namespaces(conn: sa.Connection) -> list[str]:
    """Namespaces that hold at least one live memory."""
    return list(conn.execute(_NAMESPACES).scalars())


def _namespaces() -> sa.Select[Any]:
    """Namespaces with a live memory, by skipping from one namespace to the next along the
    index that starts with it: a few probes per namespace instead of a scan of every row."""
    step = sa.select(sa.func.min(m.namespace).label("name")).cte("step", recursive=True)
    after = sa.select(sa.func.min(m.namespace)).where(m.namespace > step.c.name).scalar_subquery()
    step = step.union_all(sa.select(after).where(step.c.name.is_not(None)))
    alive = sa.exists().where(m.namespace == step.c.name, m.deleted_at.is_(None))
    return sa.select(step.c.name).where(step.c.name.is_not(None), alive).order_by(step.c.name)


_NAMESPACES = _namespaces()


def zone_policy(conn: sa.Connection, ns: str, settings: Settings) -> ZonePolicy:
    """The namespace's zone thresholds and capacities (the settings', where it has none)."""
    config = conn.execute(
        sa.select(namespace_config.c.config).where(namespace_config.c.namespace == ns)
    ).scalar()
    return ZonePolicy.from_settings(settings, config)


def stored_vectors(conn: sa.Connection, ns: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
    """Vectors of live memories with these content hashes: stored content is not embedded twice."""
    q = (
        sa.select(m.content_hash, memory_vectors.c.embedding)
        .join_from(memories, memory_vectors, memory_vectors.c.seq == m.seq)
        .where(live(ns), in_json_list(m.content_hash, "hashes", texts=True))
    )
    return dict(conn.execute(q, {"hashes": json_texts(set(hashes))}).tuples().all())


def ids_by_namespace(conn: sa.Connection, seqs: Sequence[int]) -> dict[str, list[str]]:
    """Memory ids of ``seqs``, by namespace."""
    q = sa.select(m.namespace, m.id).where(in_json_list(m.seq, "seqs"))
    out: dict[str, list[str]] = {}
    for ns, mid in conn.execute(q, {"seqs": json_list(seqs)}).tuples():
        out.setdefault(ns, []).append(mid)
    return out


def latest_stamp(conn: sa.Connection) -> str:
    """The newest clock stamp in the change log ("" if none)."""
    return str(conn.execute(sa.select(sa.func.max(changes.c.hlc))).scalar() or "")


def own_recall_counts(conn: sa.Connection, seqs: Sequence[int]) -> list[tuple[str, str, int, float | None]]:
    """(namespace, id, count, last recalled) of memories: this replica's own recall count,
    which is the total less the other replicas' counts (sync)."""
    r = recall_counts.c
    others = sa.select(sa.func.coalesce(sa.func.sum(r.count), 0)).where(r.memory_id == m.id).scalar_subquery()
    q = sa.select(m.namespace, m.id, m.recall_count - others, m.last_recalled_at).where(
        in_json_list(m.seq, "seqs")
    )
    return [(ns, mid, int(n), at) for ns, mid, n, at in conn.execute(q, {"seqs": json_list(seqs)})]


def meta_value(conn: sa.Connection, key: str) -> str | None:
    """A key-value record of the database's own."""
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()


def source_memories(conn: sa.Connection, ns: str, source_type: str, key: str) -> list[Memory]:
    """The live memories of one source, in chunk order."""
    found = fetch(conn, sa.and_(live(ns), m.source_url == key, m.source_type == source_type))
    return sorted(found.values(), key=lambda x: (x.source.chunk if x.source else None) or 0)


def source_keys(conn: sa.Connection, ns: str, source_type: str, prefix: str = "") -> set[str]:
    """Keys of the sources of a type that have live memories (optionally under a key prefix)."""
    q = sa.select(m.source_url).where(live(ns), m.source_type == source_type).distinct()
    if prefix:
        q = q.where(m.source_url.startswith(prefix, autoescape=True))
    return {key for key in conn.execute(q).scalars() if key is not None}


def everything(conn: sa.Connection, ns: str) -> tuple[list[Memory], list[Link]]:
    """The namespace's live memories (in the order they were stored) and the links between them."""
    found = fetch(conn, live(ns), order_by=(m.seq,))
    rows = conn.execute(
        sa.select(links.c.source_id, links.c.target_id, links.c.kind, links.c.weight, links.c.created_at)
        .where(links.c.namespace == ns)
        .order_by(links.c.created_at, links.c.source_id, links.c.target_id)
    ).all()
    ids = {x.id for x in found.values()}
    return list(found.values()), [Link(*r) for r in rows if r[0] in ids and r[1] in ids]


def graph_rows(
    conn: sa.Connection, ns: str
) -> tuple[list[sa.Row[Any]], dict[str, list[str]], list[tuple[str, str, str, float, float]]]:
    """The namespace's graph in three bulk reads: its live memories (the columns a graph node
    carries), their tags by id, and the links between live memories of the namespace
    (source, target, kind, weight, created_at). Links are found from their source memories
    (the links' primary key starts with the source), so only this namespace is read."""
    alive = live(ns)
    rows = conn.execute(
        sa.select(m.seq, m.id, m.content, m.encrypted, m.zone, m.importance, m.score, m.recall_count,
                  m.created_at, m.thread).where(alive)
    ).all()  # fmt: skip
    nodes = sorted(rows, key=lambda r: r.seq)  # in the order stored (the namespace's index has none)
    tags: dict[str, list[str]] = {}
    tc = memory_tags.c
    tagged = sa.select(m.id, tc.tag).join_from(memories, memory_tags, tc.memory_seq == m.seq)
    for mid, tag in conn.execute(tagged.where(alive)).tuples():
        tags.setdefault(mid, []).append(tag)
    lc = links.c
    out_edges = (
        sa.select(lc.source_id, lc.target_id, lc.kind, lc.weight, lc.created_at)
        .join_from(memories, links, lc.source_id == m.id)
        .where(alive, lc.namespace == ns)
        .order_by(lc.created_at, lc.source_id, lc.target_id, lc.kind)
    )
    ids = {r.id for r in nodes}
    found = [(s, t, k, w, at) for s, t, k, w, at in conn.execute(out_edges).tuples() if t in ids]
    return nodes, tags, found
