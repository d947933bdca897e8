"""SQLite, the embedded default: WAL, explicit BEGIN, one FTS5 table per namespace (BM25)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from stellar_core.embeddings import Embedder
from stellar_core.settings import Settings
from stellar_core.store.dialect import TextRows, namespace_token
from stellar_core.store.schema import memories
from stellar_core.store.vectors import VectorIndexes

_BUSY_TIMEOUT = "PRAGMA busy_timeout=15000"
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    _BUSY_TIMEOUT,
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
    # Deleted content is overwritten with zeros, not left in free space: a purged memory's
    # text must not stay in the file (store and recall cost the same, decision 0029).
    "PRAGMA secure_delete=ON",
    "PRAGMA cache_size=-65536",
    # Checkpoints copy the WAL into the database inside some writer's commit. A 32 MB bound
    # instead of 4 MB makes that rare (batch stores +10%); the upkeep thread checkpoints
    # passively in between, off the write path.
    "PRAGMA wal_autocheckpoint=8000",
    "PRAGMA journal_size_limit=67108864",
)


class SqliteDialect:
    """SQLite (embedded default): WAL, explicit BEGIN, FTS5 with BM25."""

    name = "sqlite"
    parallel_reads = False

    def __init__(self) -> None:
        self._text_tables: set[str] = set()  # full-text tables known to exist

    def engine_kwargs(self, settings: Settings) -> dict[str, Any]:
        return {"connect_args": {"check_same_thread": False, "timeout": 15}}

    def configure(self, engine: Engine) -> None:
        """pysqlite's own transaction handling is unreliable for DDL; issue BEGIN ourselves.

        Writers take the lock up front (BEGIN IMMEDIATE): a deferred transaction that later
        writes can fail with SQLITE_BUSY when another process committed in between.
        """

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for pragma in _PRAGMAS:
                cur.execute(pragma)
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            write = conn.get_execution_options().get("stellar_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def vector_indexes(self, db: Any, dim: int, settings: Settings) -> VectorIndexes:
        """In-process indexes (numpy, HNSW from 20k rows), kept current from the change log."""
        from stellar_core.store.vectors import InProcessIndexes

        return InProcessIndexes(db, dim, settings.hnsw_min_rows)

    def prepare_vectors(self, conn: sa.Connection, embedder: Embedder) -> None:
        """Nothing: the vectors are indexed in process."""

    def lock_namespaces(self, conn: sa.Connection, namespaces: Iterable[str], exclusive: bool) -> None:
        """Nothing: a write transaction holds the whole database."""

    def migration_lock(self, conn: sa.Connection) -> None:
        """Nothing to do: the migration runs in a BEGIN IMMEDIATE transaction, one writer."""

    def refresh_statistics(self, conn: sa.Connection) -> None:
        """Sampled planner statistics (cheap at any size): without them SQLite takes
        ``namespace = ?`` for a selective index and scans whole namespaces."""
        conn.exec_driver_sql("PRAGMA analysis_limit=400")
        conn.exec_driver_sql("ANALYZE")

    def checkpoint(self, conn: sa.Connection, truncate: bool = False) -> int:
        """Copy what it can of the WAL into the database without waiting for anyone;
        returns the frames left over (0: the WAL is fully checkpointed). ``truncate`` also
        empties the WAL file, whose old frames hold old copies of pages, if no reader is on
        it (else it returns 1 and the next round tries again)."""
        if not truncate:
            _busy, frames, done = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            return max(0, int(frames) - int(done))
        conn.exec_driver_sql("PRAGMA busy_timeout=0")  # a writer must not wait behind it
        try:
            busy, _frames, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        finally:
            conn.exec_driver_sql(_BUSY_TIMEOUT)
        return int(busy)

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
        return sqlite.insert(table)

    def insert_keyed(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[int]:
        """One multi-row INSERT ... RETURNING (rows come back in any order: matched by id)."""
        returned: dict[str, int] = dict(
            conn.execute(table.insert().returning(table.c.id, table.c.seq), list(rows)).tuples().all()
        )
        return [returned[r["id"]] for r in rows]

    def insert_many(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(table.insert(), list(rows))

    # --- full text: one FTS5 table per namespace, rowid = memories.seq -----------------
    def _text_table(self, conn: sa.Connection, namespace: str, create: bool) -> str | None:
        """The namespace's full-text table; created on first write, None if it has none yet."""
        name = "fts_" + namespace_token(namespace)
        if name in self._text_tables:
            return name
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).first()
        if not exists:
            if not create:
                return None
            # `context` holds the thread neighbours' text, ranked with a lower weight.
            conn.exec_driver_sql(
                f"CREATE VIRTUAL TABLE {name} USING fts5("
                "content, context, tokenize = 'porter unicode61 remove_diacritics 2')"
            )
            return name  # not remembered yet: this transaction may still roll back
        self._text_tables.add(name)
        return name

    def text_index_put(self, conn: sa.Connection, namespace: str, rows: TextRows) -> None:
        """(Re)index rows of one namespace: content and context columns."""
        if not rows.rows:
            return
        table = self._text_table(conn, namespace, create=True)
        self.text_index_drop(conn, namespace, [seq for seq, _ in rows.rows])  # FTS5 rejects a duplicate rowid
        conn.exec_driver_sql(f"INSERT INTO {table}(rowid, content, context) VALUES (?, ?, ?)", rows.joined())

    def text_index_drop(self, conn: sa.Connection, namespace: str, seqs: Sequence[int]) -> None:
        """Remove rows from a namespace's full-text index."""
        table = self._text_table(conn, namespace, create=False)
        if table is None:
            return
        for i in range(0, len(seqs), 500):
            chunk = list(seqs[i : i + 500])
            marks = ",".join("?" * len(chunk))
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE rowid IN ({marks})", tuple(chunk))

    def text_index_scrub(self, conn: sa.Connection, namespace: str, texts: Sequence[str]) -> None:
        """FTS5 leaves a deleted row's terms in its segments until they are merged; 'optimize'
        merges them all now (0.5 s at 100k memories; SQLite 3.42's 'secure-delete' would not
        need it)."""
        table = self._text_table(conn, namespace, create=False)
        if table is not None:
            conn.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")

    def text_index_upkeep(self, db: Any, context_weight: float, seconds: float | None) -> int:
        """Nothing: FTS5 keeps its own index in shape."""
        return 0

    def text_search(
        self,
        conn: sa.Connection,
        namespace: str,
        terms: Sequence[str],
        limit: int,
        context_weight: float,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[tuple[int, float]]:
        """BM25 top ``limit`` (seq, score) for any of ``terms``, higher score better.

        The table holds live memories only, so the memories table is joined only to filter.
        """
        table = self._text_table(conn, namespace, create=False) if terms else None
        if table is None:
            return []
        params = {
            "match": " OR ".join('"' + t.replace('"', '""') + '"' for t in terms),
            "context_weight": context_weight,
            "limit": limit,
        }
        if where is None:
            return [(int(seq), -float(r)) for seq, r in conn.execute(_text_query(table), params)]
        fts = sa.table(table, sa.column("rowid"))
        query = (
            sa.select(fts.c.rowid, _bm25(table).label("rank"))
            .join_from(fts, memories, memories.c.seq == fts.c.rowid)
            .where(sa.literal_column(table).op("MATCH")(sa.bindparam("match")), where)
            .order_by(sa.text("rank"))
            .limit(sa.bindparam("limit"))
        )
        return [(int(seq), -float(r)) for seq, r in conn.execute(query, params)]


def _bm25(table: str) -> sa.ColumnElement[float]:
    return sa.func.bm25(sa.literal_column(table), 1.0, sa.bindparam("context_weight"))


@functools.lru_cache(maxsize=256)
def _text_query(table: str) -> sa.Select[Any]:
    """The unfiltered full-text query of one table, built once (building costs more than
    the search itself on a small namespace)."""
    fts = sa.table(table, sa.column("rowid"))
    return (
        sa.select(fts.c.rowid, _bm25(table).label("rank"))
        .where(sa.literal_column(table).op("MATCH")(sa.bindparam("match")))
        .order_by(sa.text("rank"))
        .limit(sa.bindparam("limit"))
    )
