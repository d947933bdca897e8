"""Vectors in their own table; one full-text table per namespace; one content-hash index.

Reorbit rewrites every row; without the embedding inside it a row is a quarter of the size.
A full-text table per namespace keeps the partition out of the MATCH: a namespace token
ANDed into every query made FTS5 walk (and count, for BM25) the namespace's whole posting list.
The dedup index now leads with (namespace, content_hash), so it also answers content lookups
and the separate hash index goes: each random-order index costs a batch insert ~1,000 pages.

Revision ID: 0003
"""

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        from pgvector.sqlalchemy import VECTOR

        vector_type: sa.types.TypeEngine[Any] = VECTOR()
    else:
        vector_type = sa.LargeBinary()
    op.create_table(
        "memory_vectors",
        sa.Column("seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
        sa.Column("embedding", vector_type, nullable=False),
    )
    if not postgres:  # PostgreSQL support starts at this revision: nothing to carry over
        op.execute(
            "INSERT INTO memory_vectors (seq, embedding) "
            "SELECT seq, embedding FROM memories WHERE embedding IS NOT NULL"
        )
    op.drop_column("memories", "embedding")
    op.drop_index("ix_memories_hash", "memories")
    op.execute("DROP INDEX ux_memories_dedup")
    op.execute(
        "CREATE UNIQUE INDEX ux_memories_dedup ON memories "
        "(namespace, content_hash, COALESCE(thread, '')) WHERE deleted_at IS NULL"
    )
    if postgres:
        _postgres_text_index()
    else:
        _sqlite_text_tables()


def _postgres_text_index() -> None:
    from sqlalchemy.dialects.postgresql import TSVECTOR

    op.create_table(
        "memory_text",
        sa.Column("seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("doc", TSVECTOR(), nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
    )
    op.execute("CREATE INDEX ix_memory_text_doc ON memory_text USING gin (doc)")
    op.create_index("ix_memory_text_ns", "memory_text", ["namespace"])
    # BM25's collection statistics per namespace, kept exact by every index write.
    op.create_table(
        "text_stats",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("docs", sa.BigInteger, nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
    )


def _sqlite_text_tables() -> None:
    for (namespace,) in op.get_bind().execute(sa.text("SELECT DISTINCT namespace FROM memories")):
        token = "ns" + hashlib.sha1(namespace.encode()).hexdigest()[:16]
        op.execute(
            f"CREATE VIRTUAL TABLE fts_{token} USING fts5("
            "content, context, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        op.execute(
            f"INSERT INTO fts_{token} (rowid, content, context) "
            f"SELECT rowid, content, context FROM memories_fts WHERE ns = '{token}'"
        )
    op.execute("DROP TABLE memories_fts")


def downgrade() -> None:
    raise NotImplementedError("0003 is not reversible: restore a backup taken before upgrading")
