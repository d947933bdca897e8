"""The vector arm on PostgreSQL: pgvector's HNSW index (cosine), queried inside the recall's
own transaction. Nothing is held in process memory, so any number of agents on any number
of machines search the same vectors.

New vectors are inserted outside the graph (``indexed = false``: a partial index) and searched
exactly until the upkeep adds them, a batch at a time: maintaining the graph inside the insert
cost two thirds of a batch insert. Migration 0004 has the numbers.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR

from stellar_core.store.dialect import in_json_list, json_list
from stellar_core.store.pgtypes import SEQS_SQL, BinaryVector
from stellar_core.store.records import live, m
from stellar_core.store.schema import Embedding, memories, memory_vectors

if TYPE_CHECKING:
    from stellar_core.store.database import Database

log = logging.getLogger(__name__)
v = memory_vectors.c
EF_SEARCH = 128  # candidates the graph walk keeps; as for the in-process HNSW index
INDEX_BATCH = 500  # vectors added to the graph per transaction
_REBUILD_LOCK = 0x5E11A13  # one rebuild at a time across every process
MAINTAIN_SECONDS = 0.5  # per upkeep round, so recall statistics are not held up behind it
_indexed = sa.literal_column("memory_vectors.indexed", sa.Boolean)  # PostgreSQL only: 0004
_PREWARM = sa.text("SELECT pg_prewarm(CAST(:relation AS regclass))")
# What a recall reads besides the graph, prewarmed before it, least used first (a server with
# too few buffers keeps the later ones): the rows of vectors and memories that the thread
# neighbours and the head's boosts read, then the lexical arm's (search/pgtext.py).
_RECALL_RELATIONS = (
    "memory_vectors",
    "memories",
    "memory_text",
    "ix_memory_text_doc",
    "text_top",
    "text_top_pkey",
    "text_terms",
    "text_terms_pkey",
)
# ef_search: candidates the walk keeps. Iterative scans keep reading the graph until enough
# rows pass the namespace filter (pgvector >= 0.8): a small namespace in a large table
# otherwise finds too few. Both for this transaction only.
EF_SEARCH_MAX = 1000  # pgvector refuses more (a recall of k=1000 asks up to 3k candidates)
_SEARCH_SETTINGS = sa.text(
    "SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
_COUNTS = sa.text("SELECT count(*) FILTER (WHERE NOT indexed), count(*) FROM memory_vectors")
_INDEX_PENDING = sa.text(
    "UPDATE memory_vectors SET indexed = true WHERE seq IN (SELECT seq FROM memory_vectors "
    "WHERE NOT indexed ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED)"
)  # SKIP LOCKED: processes maintaining at once take different rows


def ensure_index(conn: sa.Connection, dim: int, concurrently: bool = False) -> None:
    """The HNSW index for vectors of ``dim`` dimensions (the column itself is unconstrained,
    so the index is on the column cast to ``vector(dim)``, and queries use the same cast)."""
    how = "CONCURRENTLY " if concurrently else ""
    conn.exec_driver_sql(
        f"CREATE INDEX {how}IF NOT EXISTS {_index_name(dim)} ON memory_vectors "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE indexed"
    )


def _index_name(dim: int) -> str:
    return f"ix_memory_vectors_hnsw_{dim}"


class PgVectorIndexes:
    """Hands out a ``PgVectorSearch`` per namespace and transaction; adds new vectors to the
    graph."""

    def __init__(self, db: Database, dim: int, build_memory: str = "1GB", rebuild_min: int = 10_000) -> None:
        self._db = db
        self.dim = dim
        self._build_memory = build_memory
        self._rebuild_min = rebuild_min  # fewer waiting vectors than this join the graph one by one

    def get(self, namespace: str, conn: sa.Connection | None = None) -> PgVectorSearch:
        if conn is None:
            raise TypeError("PostgreSQL vector search runs inside a transaction: pass conn")
        return PgVectorSearch(conn, namespace, self.dim)

    def warm(self, namespace: str) -> None:
        """Add every vector still outside the graph (of any namespace: they share one graph).

        After a bulk load (at least half the vectors waiting) the graph is built afresh:
        measured on 50k vectors, 26 s where adding them one by one took 154 s.
        """
        with self._db.read() as conn:
            waiting, total = conn.execute(_COUNTS).one()
        if waiting >= self._rebuild_min and 2 * waiting > total:
            self.rebuild()
        while self.index_pending(INDEX_BATCH):
            pass
        if waiting:
            self._vacuum()
        self.prewarm()

    def _vacuum(self) -> None:
        """Clear the rows that adding vectors to the graph left dead, and refresh the planner's
        statistics (from before, with most vectors waiting, it scans the table for the exact
        arm). After a bulk load that is every row: a throttled autovacuum then spent over 7
        minutes on them at 1M, beside the recalls; unthrottled here it takes 5 s."""
        with self._db.engine.connect() as raw:  # VACUUM runs outside a transaction
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM ANALYZE memory_vectors")

    def prewarm(self) -> bool:
        """Read what every recall reads into the server's shared buffers, the graph last:
        vector and memory rows, the full-text rows and index and the term lists, then the
        graph. Where the server has ``pg_prewarm`` and this role may create it (or it exists).
        A fresh build or a restart leaves them on disk, and the first thousand recalls then
        read them page by page. Measured at 1M: recall p95 167 ms cold, 30 ms after a 1.4 s
        prewarm of the graph (decision 0017); the first 300 recalls after a restart p50 18.8 /
        p95 38.6 ms with the graph alone prewarmed, 11.5 / 24.8 ms with the text too (4 GB of
        buffers); decision 0017 has the figures with the vector and memory rows too."""
        try:
            with self._db.write() as conn:
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                for relation in (*_RECALL_RELATIONS, _index_name(self.dim)):
                    conn.execute(_PREWARM, {"relation": relation})
        except sa.exc.DBAPIError as exc:
            log.info("search indexes not prewarmed: %s", str(exc.orig).strip())
            return False
        return True

    def rebuild(self) -> None:
        """Drop the graph, mark every vector indexed, build the graph over all of them.

        Nothing waits on it but the vector arm, which scans exactly until the graph is back
        (``CREATE INDEX CONCURRENTLY``: stores go on). A process that finds another
        rebuilding leaves it to that one.
        """
        with self._db.engine.connect() as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _REBUILD_LOCK}).scalar():
                return
            try:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {_index_name(self.dim)}")
                conn.exec_driver_sql("UPDATE memory_vectors SET indexed = true WHERE NOT indexed")
                conn.exec_driver_sql(f"SET maintenance_work_mem = '{self._build_memory}'")
                try:
                    ensure_index(conn, self.dim, concurrently=True)
                except Exception:  # an interrupted concurrent build leaves an invalid index
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {_index_name(self.dim)}")
                    ensure_index(conn, self.dim)
            finally:
                conn.exec_driver_sql("RESET maintenance_work_mem")
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _REBUILD_LOCK})

    def upkeep(self) -> None:
        """Add waiting vectors to the graph for up to ``MAINTAIN_SECONDS``."""
        deadline = time.monotonic() + MAINTAIN_SECONDS
        while self.index_pending(INDEX_BATCH) == INDEX_BATCH and time.monotonic() < deadline:
            pass

    def index_pending(self, limit: int) -> int:
        """Add up to ``limit`` waiting vectors to the graph; how many were added."""
        with self._db.write() as conn:
            return int(conn.execute(_INDEX_PENDING, {"n": limit}).rowcount)


class PgVectorSearch:
    """``VectorSearch`` over one namespace's rows, in the caller's transaction."""

    def __init__(self, conn: sa.Connection, namespace: str, dim: int) -> None:
        self._conn = conn
        self._ns = namespace
        self._vec = sa.cast(v.embedding, VECTOR(dim))  # the indexed expression
        self._dim = dim

    def _distance(self, query: np.ndarray) -> sa.ColumnElement[float]:
        q = sa.bindparam("q", np.asarray(query, dtype=np.float32), type_=Embedding())
        return self._vec.op("<=>", return_type=sa.Float)(q)

    def search(self, query: np.ndarray, n: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """The graph's nearest, merged with an exact scan of the vectors not in it yet (one
        statement for both)."""
        ef = min(max(EF_SEARCH, int(n)), EF_SEARCH_MAX)
        self._conn.execute(_SEARCH_SETTINGS, {"ef": str(ef)})
        dist = self._distance(query)
        params = {}
        stmt: Any = sa.select(v.seq, dist.label("d")).join(memories, m.seq == v.seq).where(live(self._ns))
        if allowed is not None:
            stmt = stmt.where(in_json_list(v.seq, "seqs"))
            params["seqs"] = json_list(sorted(allowed))
        both = sa.union_all(*(stmt.where(part).order_by(dist).limit(n) for part in (_indexed, ~_indexed)))
        found = [(int(seq), 1.0 - float(d)) for seq, d in self._conn.execute(both, params)]
        return sorted(found, key=lambda hit: -hit[1])[:n]

    def similarities(self, query: np.ndarray, seqs: Sequence[int]) -> dict[int, float]:
        if not seqs:
            return {}
        stmt = sa.select(v.seq, self._distance(query)).where(in_json_list(v.seq, "seqs"))
        rows = self._conn.execute(stmt, {"seqs": json_list(seqs)})
        return {int(seq): 1.0 - float(d) for seq, d in rows}

    def all_similarities(self, query: np.ndarray) -> dict[int, float]:
        stmt = sa.select(v.seq, self._distance(query)).join(memories, m.seq == v.seq).where(live(self._ns))
        return {int(seq): 1.0 - float(d) for seq, d in self._conn.execute(stmt)}

    def around(self, query: np.ndarray, seqs: Iterable[int], reach: int) -> list[tuple[int, str, int, float]]:
        wanted = list(seqs)
        if not wanted:
            return []
        q = BinaryVector(np.asarray(query, dtype=np.float32))
        params = {"seqs": json_list(wanted), "ns": self._ns, "reach": reach, "q": q}
        rows = self._conn.execute(_around_sql(self._dim), params)
        return [(int(seq), t, int(p), 1.0 - float(d)) for seq, t, p, d in rows]


@functools.lru_cache(maxsize=8)
def _around_sql(dim: int) -> sa.TextClause:
    """Live memories within ``reach`` of the seqs in their threads, with their distance."""
    return sa.text(
        f"""
        WITH places AS (
            SELECT thread, position FROM memories
            WHERE seq IN ({SEQS_SQL}) AND thread IS NOT NULL AND position IS NOT NULL
        )
        SELECT DISTINCT n.seq, n.thread, n.position,
               v.embedding::vector({dim}) <=> CAST(:q AS vector({dim})) AS d
        FROM places p
        JOIN memories n ON n.namespace = :ns AND n.thread = p.thread
             AND n.position BETWEEN p.position - :reach AND p.position + :reach
             AND n.deleted_at IS NULL
        JOIN memory_vectors v ON v.seq = n.seq
        """
    )
