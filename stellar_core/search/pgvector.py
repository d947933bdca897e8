"""The vector arm on PostgreSQL: pgvector's HNSW index (cosine), queried inside the recall's
own transaction. Nothing is held in process memory, so any number of agents on any number
of machines search the same vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR

from stellar_core.search import lexical
from stellar_core.store.dialect import in_json_list, json_list
from stellar_core.store.records import live, m
from stellar_core.store.schema import memories, memory_vectors

v = memory_vectors.c
EF_SEARCH = 128  # candidates the graph walk keeps; as for the in-process HNSW index


def ensure_index(conn: sa.Connection, dim: int) -> None:
    """The HNSW index for vectors of ``dim`` dimensions (the column itself is unconstrained,
    so the index is on the column cast to ``vector(dim)``, and queries use the same cast)."""
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS ix_memory_vectors_hnsw_{dim} ON memory_vectors "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops)"
    )


class PgVectorIndexes:
    """Hands out a ``PgVectorSearch`` per namespace and transaction; keeps no state."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def get(self, namespace: str, conn: sa.Connection | None = None) -> PgVectorSearch:
        if conn is None:
            raise TypeError("PostgreSQL vector search runs inside a transaction: pass conn")
        return PgVectorSearch(conn, namespace, self.dim)

    def warm(self, namespace: str) -> None:
        """Nothing to load: the index lives in the database."""

    def maintain(self) -> None:
        """PostgreSQL maintains its own index."""


class PgVectorSearch:
    """``VectorSearch`` over one namespace's rows, in the caller's transaction."""

    def __init__(self, conn: sa.Connection, namespace: str, dim: int) -> None:
        self._conn = conn
        self._ns = namespace
        self._vec = sa.cast(v.embedding, VECTOR(dim))  # the indexed expression
        self._dim = dim
        # Iterative scans keep reading the graph until enough rows pass the namespace filter
        # (pgvector >= 0.8); without them a small namespace in a large table finds too few.
        conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")

    def _distance(self, query: np.ndarray) -> sa.ColumnElement[float]:
        q = sa.bindparam("q", np.asarray(query, dtype=np.float32), type_=VECTOR(self._dim))
        return self._vec.op("<=>", return_type=sa.Float)(q)

    def search(self, query: np.ndarray, n: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        self._conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, int(n))}")
        dist = self._distance(query)
        stmt: Any = (
            sa.select(v.seq, dist.label("d"))
            .join(memories, m.seq == v.seq)
            .where(live(self._ns))
            .order_by(dist)
            .limit(n)
        )
        params = {}
        if allowed is not None:
            stmt = stmt.where(in_json_list(v.seq, "seqs"))
            params["seqs"] = json_list(sorted(allowed))
        return [(int(seq), 1.0 - float(d)) for seq, d in self._conn.execute(stmt, params)]

    def similarities(self, query: np.ndarray, seqs: Sequence[int]) -> dict[int, float]:
        if not seqs:
            return {}
        stmt = sa.select(v.seq, self._distance(query)).where(in_json_list(v.seq, "seqs"))
        rows = self._conn.execute(stmt, {"seqs": json_list(seqs)})
        return {int(seq): 1.0 - float(d) for seq, d in rows}

    def all_similarities(self, query: np.ndarray) -> dict[int, float]:
        stmt = sa.select(v.seq, self._distance(query)).join(memories, m.seq == v.seq).where(live(self._ns))
        return {int(seq): 1.0 - float(d) for seq, d in self._conn.execute(stmt)}

    def neighbours_of(self, seqs: Iterable[int], window: int) -> dict[int, list[int]]:
        wanted = list(seqs)
        out: dict[int, list[int]] = {seq: [] for seq in wanted}
        if not wanted or window <= 0:
            return out
        places = self._conn.execute(
            sa.select(m.seq, m.thread, m.position).where(
                in_json_list(m.seq, "seqs"), m.thread.is_not(None), m.position.is_not(None)
            ),
            {"seqs": json_list(wanted)},
        ).all()
        by_thread: dict[str, list[tuple[int, int]]] = {}
        for seq, thread, pos, _ in lexical.in_spans(
            self._conn, self._ns, [(t, p) for _, t, p in places], window
        ):
            by_thread.setdefault(thread, []).append((pos, seq))
        for seq, thread, pos in places:
            out[seq] = [s for p, s in by_thread.get(thread, ()) if s != seq and abs(p - pos) <= window]
        return out
