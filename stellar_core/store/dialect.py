"""What differs between databases: connection set-up, full-text search, upsert.

Only SQLite exists today; the PostgreSQL dialect joins it here, nowhere else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from stellar_core.errors import ConfigurationError
from stellar_core.store.schema import memories

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=15000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-65536",
)


def namespace_token(namespace: str) -> str:
    """A single full-text token standing for a namespace (names may hold any characters)."""
    return "ns" + hashlib.sha1(namespace.encode()).hexdigest()[:16]


class SqliteDialect:
    """SQLite (embedded default): WAL, explicit BEGIN, FTS5 with BM25."""

    name = "sqlite"

    def engine_kwargs(self) -> dict[str, Any]:
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

    def refresh_statistics(self, conn: sa.Connection) -> None:
        """Sampled planner statistics (cheap at any size): without them SQLite takes
        ``namespace = ?`` for a selective index and scans whole namespaces."""
        conn.exec_driver_sql("PRAGMA analysis_limit=400")
        conn.exec_driver_sql("ANALYZE")

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
        return sqlite.insert(table)

    # --- full text ----------------------------------------------------------------------
    def text_index_put(self, conn: sa.Connection, rows: Iterable[tuple[int, str, str, str]]) -> None:
        """(Re)index rows of (seq, content, thread context, namespace)."""
        rows = list(rows)
        if not rows:
            return
        self.text_index_drop(conn, [r[0] for r in rows])  # FTS5 rejects a duplicate rowid
        conn.exec_driver_sql(
            "INSERT INTO memories_fts(rowid, content, context, ns) VALUES (?, ?, ?, ?)",
            [(seq, content, context, namespace_token(ns)) for seq, content, context, ns in rows],
        )

    def text_index_drop(self, conn: sa.Connection, seqs: Sequence[int]) -> None:
        """Remove rows from the full-text index."""
        for i in range(0, len(seqs), 500):
            chunk = list(seqs[i : i + 500])
            marks = ",".join("?" * len(chunk))
            conn.exec_driver_sql(f"DELETE FROM memories_fts WHERE rowid IN ({marks})", tuple(chunk))

    def text_search(
        self,
        conn: sa.Connection,
        namespace: str,
        terms: Sequence[str],
        limit: int,
        context_weight: float,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[tuple[int, float]]:
        """BM25 top ``limit`` (seq, score) for any of ``terms``, higher score better."""
        if not terms:
            return []
        quoted = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        match = f'ns : "{namespace_token(namespace)}" AND ({quoted})'
        fts = sa.table("memories_fts", sa.column("rowid"))
        rank = sa.func.bm25(sa.literal_column("memories_fts"), 1.0, context_weight, 0.0)
        query = (
            sa.select(fts.c.rowid, rank.label("rank"))
            .select_from(fts.join(memories, memories.c.seq == fts.c.rowid))
            .where(sa.literal_column("memories_fts").op("MATCH")(match))
            .where(memories.c.namespace == namespace)
            .order_by(sa.text("rank"))
            .limit(limit)
        )
        if where is not None:
            query = query.where(where)
        return [(int(seq), -float(r)) for seq, r in conn.execute(query)]


def dialect_for(url: sa.URL) -> SqliteDialect:
    """The dialect object for a database URL."""
    if url.get_backend_name() == "sqlite":
        return SqliteDialect()
    raise ConfigurationError(f"unsupported database {url.get_backend_name()!r}; use SQLite")
