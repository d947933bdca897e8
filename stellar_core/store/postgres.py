"""PostgreSQL, for many agents on many machines: a connection pool, an optional schema,
migrations under an advisory lock, full-text search over a GIN-indexed ``tsvector``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from stellar_core.settings import Settings
from stellar_core.store.dialect import in_json_list, json_list
from stellar_core.store.schema import memories, memory_text

# Any constant shared by every Stellar process: they queue on it while one migrates.
_MIGRATION_LOCK = 0x5E11A12


class PostgresDialect:
    """PostgreSQL 14+ with the pgvector extension."""

    name = "postgresql"

    def __init__(self, schema: str | None = None) -> None:
        self.schema = schema

    def engine_kwargs(self, settings: Settings) -> dict[str, Any]:
        connect_args = {"options": f"-csearch_path={self.schema},public"} if self.schema else {}
        return {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout,
            "pool_recycle": settings.db_pool_recycle,
            "pool_pre_ping": settings.db_pool_pre_ping,
            "connect_args": connect_args,
        }

    def configure(self, engine: Engine) -> None:
        """Nothing beyond the pool: PostgreSQL's READ COMMITTED default suits every path."""

    def migration_lock(self, conn: sa.Connection) -> None:
        """Processes starting at once queue here; each then sees the schema the first made."""
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if self.schema:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def refresh_statistics(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("ANALYZE memories")

    def checkpoint(self, conn: sa.Connection) -> int:
        """The server checkpoints on its own."""
        return 0

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    # --- full text ----------------------------------------------------------------------
    def text_index_put(
        self, conn: sa.Connection, namespace: str, rows: Sequence[tuple[int, str, str]]
    ) -> None:
        """(Re)index rows of (seq, content, thread context) of one namespace."""
        if rows:
            conn.execute(
                _PUT_TEXT, [{"seq": s, "ns": namespace, "content": c, "context": x} for s, c, x in rows]
            )

    def text_index_drop(self, conn: sa.Connection, namespace: str, seqs: Sequence[int]) -> None:
        if seqs:
            conn.execute(
                memory_text.delete().where(in_json_list(memory_text.c.seq, "seqs")), {"seqs": json_list(seqs)}
            )

    def text_search(
        self,
        conn: sa.Connection,
        namespace: str,
        terms: Sequence[str],
        limit: int,
        context_weight: float,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[tuple[int, float]]:
        """``ts_rank`` top ``limit`` (seq, score) for any of ``terms``.

        Terms are words (letters and digits only), so they are safe to OR into a tsquery.
        """
        if not terms:
            return []
        t = memory_text.c
        query = sa.func.to_tsquery("english", " | ".join(terms))
        # ts_rank's weights are {D, C, B, A}: content is A, thread context B.
        weights = sa.literal(f"{{0, 0, {context_weight}, 1}}").cast(postgresql.ARRAY(sa.REAL))
        rank = sa.func.ts_rank(weights, t.doc, query)
        q = (
            sa.select(t.seq, rank.label("rank"))
            .where(t.namespace == namespace, t.doc.bool_op("@@")(query))
            .order_by(sa.desc("rank"))
            .limit(limit)
        )
        if where is not None:
            q = q.join_from(memory_text, memories, memories.c.seq == t.seq).where(where)
        return [(int(seq), float(r)) for seq, r in conn.execute(q)]


_PUT_TEXT = sa.text(
    "INSERT INTO memory_text (seq, namespace, doc) VALUES (:seq, :ns, "
    "setweight(to_tsvector('english', :content), 'A') || setweight(to_tsvector('english', :context), 'B')) "
    "ON CONFLICT (seq) DO UPDATE SET doc = excluded.doc"
)
