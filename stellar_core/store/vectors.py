"""What recall and reorbit need of a namespace's vectors (``VectorSearch``, ``VectorIndexes``),
and SQLite's answer: one in-memory ``VectorIndex`` per namespace, loaded on first use and kept
current from the change log (PostgreSQL's is ``pgvector.py``).

Any process may write the database; before each search the index applies the change-log
rows it has not seen, so every process recalls what every other one stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import sqlalchemy as sa

from stellar_core.store import changelog
from stellar_core.store.records import m
from stellar_core.store.schema import memories, memory_vectors
from stellar_core.store.vector_index import VectorIndex

if TYPE_CHECKING:
    from stellar_core.store.database import Database

v = memory_vectors.c
_LIVE_VECTORS = (
    sa.select(m.id, m.seq, v.embedding, m.thread, m.position)
    .join_from(memories, memory_vectors, v.seq == m.seq)
    .where(m.namespace == sa.bindparam("namespace"), m.deleted_at.is_(None))
)


class VectorSearch(Protocol):
    """What recall and reorbit need of a namespace's vectors (``VectorIndex`` in memory for
    SQLite, ``PgVectorSearch`` over pgvector for PostgreSQL)."""

    def search(self, query: np.ndarray, n: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top ``n`` (seq, cosine) for a unit query; ``allowed`` restricts to those seqs."""

    def similarities(self, query: np.ndarray, seqs: Sequence[int]) -> dict[int, float]:
        """Cosine of the query with each known seq."""

    def all_similarities(self, query: np.ndarray) -> dict[int, float]:
        """Cosine of the query with every live memory of the namespace."""

    def around(self, query: np.ndarray, seqs: Iterable[int], reach: int) -> list[tuple[int, str, int, float]]:
        """(seq, thread, position, cosine) of the memories within ``reach`` positions of the
        given seqs in their threads, the seqs included (those in a thread)."""


class VectorIndexes(Protocol):
    """The vector search of every namespace of one open database."""

    def get(self, namespace: str, conn: Any = None) -> VectorSearch:
        """The namespace's vectors, as of ``conn``'s transaction."""

    def warm(self, namespace: str) -> None:
        """Load / build what the namespace's search needs now instead of on first use."""

    def upkeep(self) -> None:
        """Upkeep off the query path (the background thread calls it)."""


class InProcessIndexes:
    """The in-memory vector indexes of one open database (the embedded default)."""

    def __init__(self, db: Database, dim: int, hnsw_min_rows: int) -> None:
        self._db = db
        self._dim = dim
        self._hnsw_min_rows = hnsw_min_rows
        self._indexes: dict[str, VectorIndex] = {}
        self._seq_of: dict[str, dict[str, int]] = {}  # per namespace: memory id -> seq
        self._lock = threading.Lock()

    def get(self, namespace: str, conn: sa.Connection | None = None) -> VectorIndex:
        """The namespace's index, caught up with every change committed before ``conn``'s
        snapshot (a read transaction of its own if none is given)."""
        with self._lock:
            index = self._indexes.get(namespace)
            if index is None:
                index = self._indexes[namespace] = VectorIndex(self._dim, self._hnsw_min_rows)
                self._seq_of[namespace] = {}
        if conn is None:
            with self._db.read() as own:
                return self.get(namespace, own)
        with index.loading:  # one thread loads a new index; the others wait for it
            if not index.loaded:
                self._load(conn, namespace, index)
        events = changelog.since(conn, namespace, index.watermark)
        if events:
            self._apply(conn, namespace, index, events)
        return index

    def warm(self, namespace: str) -> None:
        self.get(namespace).upkeep()

    def upkeep(self) -> None:
        """Graph upkeep for every loaded index (runs off the query path)."""
        for index in list(self._indexes.values()):
            index.upkeep()

    def _load(self, conn: sa.Connection, namespace: str, index: VectorIndex) -> None:
        """Every live vector of the namespace in one pass, as of ``conn``'s snapshot: replaying
        the whole change log instead took 5.4 s at 100k memories, most of a command-line recall."""
        index.watermark = changelog.last_seq(conn, namespace)
        seqs, blobs, places = [], [], []
        seq_of = self._seq_of[namespace]
        for mid, seq, blob, thread, pos in conn.execute(_LIVE_VECTORS, {"namespace": namespace}).tuples():
            seq_of[mid] = seq
            seqs.append(seq)
            blobs.append(blob)
            places.append((thread, pos) if thread is not None and pos is not None else None)
        if seqs:
            index.upsert(seqs, np.stack(blobs).astype(np.float32, copy=False), places)
        index.loaded = True

    def _apply(
        self,
        conn: sa.Connection,
        namespace: str,
        index: VectorIndex,
        events: list[tuple[int, str, str]],
    ) -> None:
        ids = list({mid for _, mid, _ in events})
        seq_of = self._seq_of[namespace]
        with_vectors: list[tuple[int, np.ndarray, str | None, int | None]] = []
        gone: list[int] = []
        present: set[str] = set()
        for i in range(0, len(ids), 900):
            q = (
                sa.select(m.id, m.seq, v.embedding, m.thread, m.position, m.deleted_at)
                .outerjoin_from(memories, memory_vectors, v.seq == m.seq)
                .where(m.namespace == namespace, m.id.in_(ids[i : i + 900]))
            )
            for mid, seq, blob, thread, pos, deleted in conn.execute(q):
                present.add(mid)
                seq_of[mid] = seq
                if deleted is None and blob is not None:
                    with_vectors.append((seq, blob, thread, pos))
                else:
                    gone.append(seq)
        # A purged row no longer exists: its seq is known from when this index last saw it.
        gone += [seq for mid in ids if mid not in present and (seq := seq_of.pop(mid, None)) is not None]
        index.remove(gone)
        if with_vectors:
            index.upsert(
                [r[0] for r in with_vectors],
                np.stack([r[1] for r in with_vectors]).astype(np.float32),
                [(t, p) if t is not None and p is not None else None for _, _, t, p in with_vectors],
            )
        index.watermark = events[-1][0]
