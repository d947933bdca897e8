"""PostgreSQL, for many agents on many machines: a connection pool, an optional schema,
migrations under an advisory lock, full-text search over a GIN-indexed ``tsvector``."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from stellar_core.embeddings import Embedder
from stellar_core.settings import Settings
from stellar_core.store.dialect import TextRows
from stellar_core.store.schema import Embedding

if TYPE_CHECKING:
    from stellar_core.store.vectors import VectorIndexes


def _binary_copy(table: sa.Table, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    """Rows of BIGINT and vector columns in COPY's binary format: vectors go as raw floats,
    where text would cost 0.3 ms a row to format."""
    vector = [isinstance(table.c[n].type, Embedding) for n in names]
    out = [_COPY_SIGNATURE]
    for r in rows:
        out.append(struct.pack(">h", len(names)))
        for n, is_vector in zip(names, vector, strict=True):
            if is_vector:
                a = np.asarray(r[n], dtype=">f4")
                out.append(struct.pack(">iHH", 4 + 4 * a.shape[0], a.shape[0], 0) + a.tobytes())
            else:
                out.append(struct.pack(">iq", 8, r[n]))
    out.append(b"\xff\xff")
    return b"".join(out)


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)

# Any constant shared by every Stellar process: they queue on it while one migrates.
_MIGRATION_LOCK = 0x5E11A12


class PostgresDialect:
    """PostgreSQL 14+ with the pgvector extension."""

    name = "postgresql"
    parallel_reads = True

    def __init__(self, schema: str | None = None) -> None:
        from stellar_core.store.pgtext import Tuning

        self.schema = schema
        self.text_tuning = Tuning()  # where the full-text search switches strategy
        self.rebuild_min = 10_000  # fewer waiting vectors than this join the graph one by one

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

    def vector_indexes(self, db: Any, dim: int, settings: Settings) -> VectorIndexes:
        """pgvector's HNSW index, searched in SQL: nothing held per process."""
        from stellar_core.store.pgvector import PgVectorIndexes

        return PgVectorIndexes(db, dim, settings.db_index_build_memory, self.rebuild_min)

    def prepare_vectors(self, conn: sa.Connection, embedder: Embedder) -> None:
        """The HNSW index for this embedding width (created once; the caller holds the
        migration lock)."""
        from stellar_core.store.pgvector import ensure_index

        ensure_index(conn, embedder.dim)

    def migration_lock(self, conn: sa.Connection) -> None:
        """Processes starting at once queue here; each then sees the schema the first made."""
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if self.schema:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def lock_namespaces(self, conn: sa.Connection, namespaces: Iterable[str], exclusive: bool) -> None:
        """Transaction-level advisory locks, taken in sorted order (so lockers cannot cycle)."""
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        for ns in sorted(set(namespaces)):
            conn.execute(sa.text(f"SELECT {fn}(hashtextextended(:key, 0))"), {"key": "stellar-ns:" + ns})

    def refresh_statistics(self, conn: sa.Connection) -> None:
        """Every table: with one of a join analysed and the other not, the planner took the
        HNSW search for a sort of the whole table."""
        conn.exec_driver_sql("ANALYZE")

    def checkpoint(self, conn: sa.Connection, truncate: bool = False) -> int:
        """The server checkpoints on its own."""
        return 0

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def insert_keyed(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Seqs drawn from the sequence first, then the rows by COPY."""
        seqs = list(conn.execute(_NEXT_SEQS.bindparams(table=table.name, n=len(rows))).scalars())
        self.insert_many(conn, table, [{**r, "seq": seq} for r, seq in zip(rows, seqs, strict=True)])
        return seqs

    def insert_many(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """COPY: one stream per table and batch. Even a pipelined executemany cost a statement
        per row, in psycopg (half of a batch insert's client time) and in the server."""
        if not rows:
            return
        names = list(rows[0])
        columns = ", ".join(f'"{n}"' for n in names)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if any(isinstance(table.c[n].type, Embedding) for n in names):
            with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_copy(table, names, rows))
            return
        json = [isinstance(table.c[n].type, sa.JSON) for n in names]
        with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([Jsonb(r[n]) if j else r[n] for n, j in zip(names, json, strict=True)])

    # --- full text: search/pgtext.py ----------------------------------------------------------
    def text_index_put(self, conn: sa.Connection, namespace: str, rows: TextRows) -> None:
        from stellar_core.store import pgtext

        pgtext.put(conn, namespace, rows)

    def text_index_drop(self, conn: sa.Connection, namespace: str, seqs: Sequence[int]) -> None:
        from stellar_core.store import pgtext

        pgtext.drop(conn, namespace, seqs, unlist=True)

    def text_index_scrub(self, conn: sa.Connection, namespace: str, texts: Sequence[str]) -> None:
        from stellar_core.store import pgtext

        pgtext.scrub(conn, namespace, texts)

    def text_index_upkeep(self, db: Any, context_weight: float, seconds: float | None) -> int:
        """Builds the common terms' lists (search/pgtext.py)."""
        from stellar_core.store import pgtext

        return pgtext.build_lists(db, context_weight, seconds, self.text_tuning)

    def text_search(
        self,
        conn: sa.Connection,
        namespace: str,
        terms: Sequence[str],
        limit: int,
        context_weight: float,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[tuple[int, float]]:
        from stellar_core.store import pgtext

        return pgtext.search(conn, namespace, terms, limit, context_weight, where, self.text_tuning)


# In plain-SQL statements: the integers of the JSON list bound as :seqs (cf. in_json_list).

_NEXT_SEQS = sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'seq')) FROM generate_series(1, :n)")
