"""Initial schema: memories, tags, links, change log, namespace config, meta, full-text index.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # pgvector; see README for the privilege
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "memories",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("importance", sa.Float, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("recall_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_recalled_at", sa.Float),
        sa.Column("last_access_at", sa.Float, nullable=False),
        sa.Column("zone", sa.String(8), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("meta", Json, nullable=False),
        sa.Column("source_type", sa.String(32)),
        sa.Column("source_url", sa.Text),
        sa.Column("source_chunk", sa.Integer),
        sa.Column("ingested_at", sa.Float),
        sa.Column("thread", sa.String(256)),
        sa.Column("position", sa.Integer),
        sa.Column("encrypted", sa.Boolean, nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("origin_agent", sa.String(128), nullable=False),
        sa.Column("hlc", sa.String(40), nullable=False),
        sa.Column("vector_clock", Json, nullable=False),
        sa.Column("deleted_at", sa.Float),
    )
    op.create_index("ix_memories_ns_zone", "memories", ["namespace", "zone"])
    op.create_index("ix_memories_ns_thread", "memories", ["namespace", "thread", "position"])
    # Exact dedup: one live memory per (namespace, thread, content hash).
    op.execute(
        "CREATE UNIQUE INDEX ux_memories_dedup ON memories "
        "(namespace, COALESCE(thread, ''), content_hash) WHERE deleted_at IS NULL"
    )
    op.create_table(
        "memory_tags",
        sa.Column("memory_seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(128), primary_key=True),
    )
    op.create_index("ix_memory_tags_tag", "memory_tags", ["tag", "memory_seq"])
    op.create_table(
        "links",
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("source_id", sa.String(36), nullable=False),
        sa.Column("target_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("source_id", "target_id", "kind"),
    )
    op.create_index("ix_links_target", "links", ["target_id"])
    op.create_table(
        "changes",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("hlc", sa.String(40), nullable=False),
        sa.Column("vector_clock", Json, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_changes_ns_seq", "changes", ["namespace", "seq"])
    op.create_table(
        "namespace_config",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("config", Json, nullable=False),
    )
    op.create_table(
        "stellar_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        # BM25 full-text index; rowid = memories.seq. `context` holds thread neighbours,
        # `ns` a namespace token so the partition is enforced inside the MATCH.
        op.execute(
            "CREATE VIRTUAL TABLE memories_fts USING fts5("
            "content, context, ns, tokenize = 'porter unicode61 remove_diacritics 2')"
        )


def downgrade() -> None:
    for name in (
        "memories_fts",
        "stellar_meta",
        "namespace_config",
        "changes",
        "links",
        "memory_tags",
    ):
        op.execute(f"DROP TABLE IF EXISTS {name}")
    op.drop_table("memories")
