"""Near-duplicate consolidation: memories whose embeddings nearly coincide become one.

``consolidate`` reads a namespace's vectors in one query, finds every pair at or above the
threshold (``near_pairs``), joins pairs transitively into clusters, and merges each cluster in
one transaction: the survivor keeps its own content and records the others (ids, times, tags,
recall counts; not their texts, which go when they are purged) in ``metadata["merged"]``; the
others are forgotten.

Only standalone memories take part: a memory in a thread is a turn of a conversation or a
chunk of a document, and two "Yes." in two conversations are two events (decision 0006), while
documents are kept free of repeats by their source hash. Never merged either: summaries,
encrypted memories (their vectors are not compared), memories of different sources (only
memories without a source, or of the same source, share a cluster), and pinned memories into
another memory (a pinned one may survive; a cluster holds at most one).
Why this way and how fast: docs/decisions/0014-near-duplicate-consolidation.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.engine import Engine
from stellar_core.errors import ValidationError
from stellar_core.models import Memory, Principal
from stellar_core.store.edges import SUMMARY_TYPE
from stellar_core.store.records import fetch_seqs, live, m
from stellar_core.store.schema import memories, memory_vectors

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory

CELL = 256  # memories per cell of the partition: the scan costs n * n * PROBES / CELL products
PROBES = 3  # cells each memory is compared against (its nearest centroids); 2 missed 0.5%
MAX_PER_ROW = 32  # pairs kept per memory and cell: enough to connect a group of copies
_BLOCK = 1 << 22  # similarities computed at once (16 MB of float32)
_EPS = 1e-6  # float32 rounding: identical vectors must meet a threshold of 1.0


@dataclass(frozen=True)
class DedupResult:
    """What one consolidation did.

    ``scanned`` memories were compared (live ones, minus summaries and encrypted ones);
    ``clusters`` of near-duplicates were found and merged, folding ``merged`` memories into
    their cluster's survivor. ``seconds`` in all: ``search_seconds`` reading vectors and
    finding pairs, ``merge_seconds`` writing.
    """

    namespace: str
    threshold: float
    scanned: int
    clusters: int
    merged: int
    seconds: float
    search_seconds: float
    merge_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the same in a flow result, a log line or a test."""
        return asdict(self)


def consolidate(
    mem: StellarMemory,
    *,
    namespace: str | None = None,
    threshold: float | None = None,
    principal: Principal | str | None = None,
) -> DedupResult:
    """Merge the namespace's near-duplicates (cosine >= ``threshold``, default the
    ``dedup_threshold`` setting); running it again merges nothing new."""
    started = time.perf_counter()
    engine = mem.engine
    ns, who = engine.scope(namespace, principal)
    limit = mem.settings.dedup_threshold if threshold is None else threshold
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit <= 1:
        raise ValidationError(f"threshold must be a cosine similarity in (0, 1], not {limit!r}")
    engine.flush()  # recall counts decide the survivor: write the pending ones first
    seqs, x, pinned, source = _candidates(engine, ns, who)
    a, b = near_pairs(x, float(limit))
    same = source[a] == source[b]
    clusters = _split_pinned(components(len(seqs), a[same], b[same]), pinned, x)
    searched = time.perf_counter()
    merged = done = 0
    for rows in clusters:
        folded = _merge(engine, ns, who, {int(seqs[i]): x[i] for i in rows})
        merged += folded
        done += folded > 0
    end = time.perf_counter()
    return DedupResult(
        ns, float(limit), len(seqs), done, merged, end - started, searched - started, end - searched
    )


# --- finding clusters --------------------------------------------------------------------
def _candidates(
    engine: Engine, ns: str, who: Principal
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(seqs, unit vectors, pinned flags, source codes) of the memories that may merge, read in
    one query. Equal source codes: no source, or the same (type, key)."""
    q = (
        sa.select(m.seq, m.pinned, m.source_type, m.source_url, memory_vectors.c.embedding)
        .join_from(memories, memory_vectors, memory_vectors.c.seq == m.seq)
        .where(live(ns), sa.not_(m.encrypted), m.thread.is_(None))
        .where(sa.or_(m.source_type.is_(None), m.source_type != SUMMARY_TYPE))
        .order_by(m.seq)
    )
    with engine.reading("dedup", ns, who) as r:
        rows = r.conn.execute(q).all()
    dim = engine.embedder.dim
    x = np.stack([r.embedding for r in rows]).astype(np.float32) if rows else np.zeros((0, dim), "f4")
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    codes: dict[tuple[str, str | None] | None, int] = {None: 0}
    source = [
        codes.setdefault((r.source_type, r.source_url), len(codes)) if r.source_type else 0 for r in rows
    ]
    return (
        np.array([r.seq for r in rows], dtype=np.int64),
        x,
        np.array([bool(r.pinned) for r in rows], dtype=bool),
        np.array(source, dtype=np.int64),
    )


def near_pairs(x: np.ndarray, threshold: float, cell: int = CELL) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(a, b)``, ``a < b``, of unit vectors with cosine >= ``threshold``.

    Up to ``4 * cell`` rows every pair is compared. Beyond that, spherical k-means splits the
    rows into cells of about ``cell``; each row is compared with the rows of its ``PROBES``
    nearest cells. Near-duplicates sit close together, so they share a cell or a neighbour
    (measured at 100k: 99.9-100% of planted pairs found, see decision 0014). The products are
    plain matrix multiplications, a block at a time: every similarity is exact, only the
    choice of pairs compared is approximate.
    """
    n = len(x)
    # Past ~sqrt(n * PROBES) cells, finding each row's cells costs more than the scan saves.
    nlist = min(n // cell, int(np.sqrt(n * PROBES)))
    if nlist < 4:
        home = np.zeros(n, dtype=np.int64)
        probes = home[:, None]
        nlist = 1 if n else 0
    else:
        km = faiss.Kmeans(x.shape[1], nlist, niter=5, spherical=True, seed=1234, max_points_per_centroid=32)
        km.train(x)
        _, probes = km.index.search(x, PROBES)  # nearest centroid first
        home = probes[:, 0]
    members = _groups(home, nlist)
    queries = _groups(probes.ravel(), nlist)
    found: list[np.ndarray] = []
    for c in range(nlist):
        inside = members[c]
        if len(inside) == 0:
            continue
        xm = x[inside]
        asking = queries[c] // probes.shape[1]
        step = max(1, _BLOCK // len(inside))
        for at in range(0, len(asking), step):
            rows = asking[at : at + step]
            sim = x[rows] @ xm.T
            hit = sim >= threshold - _EPS
            crowded = hit.sum(axis=1) > MAX_PER_ROW
            if crowded.any():  # a large group of copies: each row's best pairs connect it
                best = np.argpartition(-sim[crowded], MAX_PER_ROW, axis=1)[:, :MAX_PER_ROW]
                keep = np.zeros_like(hit[crowded])
                np.put_along_axis(keep, best, True, axis=1)
                hit[crowded] &= keep
            r, k = np.nonzero(hit)
            a, b = rows[r], inside[k]
            found.append(np.minimum(a, b)[a != b] * n + np.maximum(a, b)[a != b])
    keys = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return keys // max(n, 1), keys % max(n, 1)


def _groups(labels: np.ndarray, count: int) -> list[np.ndarray]:
    """Indexes of ``labels`` grouped by label 0..count-1."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(count)]


def components(n: int, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Connected components of two or more of the graph on ``n`` nodes with edges ``a - b``
    (hook-and-compress in numpy: a few passes over the edges, no Python loop per edge)."""
    label = np.arange(n)
    while len(a):
        la, lb = label[a], label[b]
        if np.array_equal(la, lb):
            break
        low = np.minimum(la, lb)
        np.minimum.at(label, la, low)
        np.minimum.at(label, lb, low)
        while not np.array_equal(nxt := label[label], label):
            label = nxt
    nodes = np.unique(np.concatenate([a, b])) if len(a) else np.zeros(0, dtype=np.int64)
    groups: dict[int, list[int]] = {}
    for i in nodes.tolist():
        groups.setdefault(int(label[i]), []).append(i)
    return [np.array(g) for g in groups.values() if len(g) > 1]


def _split_pinned(clusters: list[np.ndarray], pinned: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """Clusters with at most one pinned memory each: where several are pinned, every other
    member joins the pinned one it is most similar to."""
    out = []
    for rows in clusters:
        anchors = rows[pinned[rows]]
        if len(anchors) < 2:
            out.append(rows)
            continue
        rest = rows[~pinned[rows]]
        nearest = (x[rest] @ x[anchors].T).argmax(axis=1) if len(rest) else np.zeros(0, dtype=np.int64)
        for j, anchor in enumerate(anchors):
            group = rest[nearest == j]
            if len(group):
                out.append(np.concatenate([[anchor], group]))
    return out


# --- merging -----------------------------------------------------------------------------
def _merge(engine: Engine, ns: str, who: Principal, cluster: dict[int, np.ndarray]) -> int:
    """Fold a cluster (seq -> unit vector) into its survivor in one transaction; how many
    memories were folded. Rows are read again under lock: a memory forgotten, pinned or
    encrypted since the scan is left as it is now."""
    seqs = sorted(cluster)
    with engine.writing("dedup", ns, who) as tx:
        tx.lock(exclusive=False)  # a row-level writer of the namespace (see lock_namespaces)
        conn = tx.conn
        conn.execute(
            sa.select(m.seq).where(m.seq.in_(seqs)).order_by(m.seq).with_for_update()
        )  # in seq order
        found = fetch_seqs(conn, seqs)
        current = [
            (seq, x)
            for seq, x in found.items()
            if x.namespace == ns and not x.forgotten and not x.encrypted and not _is_summary(x)
        ]
        if len(current) < 2:
            return 0
        keep_seq, keep = max(current, key=lambda s_x: _rank(s_x[1], s_x[0]))
        folded = [(seq, x) for seq, x in current if seq != keep_seq and not x.pinned]
        if not folded:
            return 0
        history = _as_list(keep.metadata.get("merged"))
        for seq, x in folded:
            similarity = float(np.dot(cluster[seq], cluster[keep_seq]))
            history.extend(_history(x, similarity, tx.now))
        values = {
            "importance": max(x.importance for _, x in [(keep_seq, keep), *folded]),
            "meta": check.metadata({**keep.metadata, "merged": _unique_ids(history)}),
        }
        tags = sorted({t for _, x in [(keep_seq, keep), *folded] for t in x.tags})
        tx.update(keep.id, values, tags)
        for _, x in folded:
            tx.forget(x.id)
    return len(folded)


def _rank(x: Memory, seq: int) -> tuple[bool, int, float, float, int]:
    """Survivor order: pinned, most recalled, most important, oldest (then first stored)."""
    return (x.pinned, x.recall_count, x.importance, -x.created_at, -seq)


def _is_summary(x: Memory) -> bool:
    return x.source is not None and x.source.type == SUMMARY_TYPE


def _history(x: Memory, similarity: float, now: float) -> list[dict[str, Any]]:
    """The entry of a merged memory, preceded by those of memories merged into it before (one
    flat list on the survivor). No content or metadata: the merged memory is purged in time,
    and its text must go with it (decision 0029)."""
    earlier = _as_list(x.metadata.get("merged"))
    entry = {
        "id": x.id,
        "created_at": x.created_at,
        "importance": x.importance,
        "recall_count": x.recall_count,
        "tags": list(x.tags),
        "thread": x.thread,
        "similarity": round(similarity, 4),
        "merged_at": now,
    }
    return [*earlier, entry]


def _as_list(value: Any) -> list[Any]:
    """A ``merged`` value as a list (a caller's own non-list value is kept, as its first item)."""
    return list(value) if isinstance(value, list) else [] if value is None else [value]


def _unique_ids(entries: Sequence[Any]) -> list[Any]:
    """Entries with the first of each id (a history is never recorded twice)."""
    seen: set[str] = set()
    out = []
    for e in entries:
        key = e.get("id") if isinstance(e, dict) else None
        if not isinstance(key, str) or key not in seen:
            out.append(e)
            if isinstance(key, str):
                seen.add(key)
    return out
