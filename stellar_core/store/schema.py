"""Table definitions (SQLAlchemy Core). Migrations create them; queries import them from here."""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

metadata = sa.MetaData()

# SQLite needs INTEGER PRIMARY KEY (the rowid alias) for a cheap autoincrementing key.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


class Embedding(sa.types.TypeDecorator[np.ndarray]):
    """A float32 vector: little-endian bytes on SQLite, pgvector's ``vector`` on PostgreSQL."""

    impl = sa.LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from stellar_core.store.pgtypes import VectorType

            return dialect.type_descriptor(VectorType())
        return dialect.type_descriptor(sa.LargeBinary())

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        vec = np.asarray(value, dtype="<f4")
        if dialect.name == "postgresql":
            from stellar_core.store.pgtypes import BinaryVector

            return BinaryVector(vec)
        return vec.tobytes()

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> np.ndarray | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return value  # type: ignore[no-any-return]  # already an array (VectorType)
        return np.frombuffer(value, dtype="<f4")


memories = sa.Table(
    "memories",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("importance", sa.Float, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, default=False),
    sa.Column("recall_count", sa.Integer, nullable=False, default=0),
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
    sa.Column("encrypted", sa.Boolean, nullable=False, default=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("origin_agent", sa.String(128), nullable=False),
    sa.Column("hlc", sa.String(40), nullable=False),
    sa.Column("vector_clock", Json, nullable=False),
    sa.Column("deleted_at", sa.Float),
    # An encrypted memory's words as keyed hashes (what its full-text rows are made of), so
    # that neither the index nor a neighbour's context ever holds its plaintext.
    sa.Column("search_text", sa.Text),
    # Sync (decision 0030): the stamp ("<hlc> <agent>") of each field written after the
    # memory was created, for the last-writer-wins merge; absent: as created.
    sa.Column("stamps", Json),
    sa.Index("ix_memories_ns_zone", "namespace", "zone"),
    sa.Index("ix_memories_ns_thread", "namespace", "thread", "position"),
    sa.Index("ix_memories_ns_source", "namespace", "source_url"),
    sa.Index("ix_memories_ns_key", "namespace", "key_id"),  # key rotation
)

# Vectors live beside the rows, not in them: reorbit rewrites every row's score and zone,
# and a 1.5 KB blob inside each row would be rewritten with it.
memory_vectors = sa.Table(
    "memory_vectors",
    metadata,
    sa.Column("seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
    sa.Column("embedding", Embedding, nullable=False),
)

# PostgreSQL's full-text index (SQLite has one FTS5 table per namespace instead): content
# weighted A, the thread neighbours' text B.
memory_text = sa.Table(
    "memory_text",
    metadata,
    sa.Column("seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("doc", sa.Text().with_variant(TSVECTOR(), "postgresql"), nullable=False),
    sa.Column("length", sa.Integer, nullable=False),  # tokens, for BM25's length normalisation
)

# PostgreSQL: BM25's collection statistics per namespace (documents, total tokens).
text_stats = sa.Table(
    "text_stats",
    metadata,
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("docs", sa.BigInteger, nullable=False),
    sa.Column("length", sa.BigInteger, nullable=False),
)

memory_tags = sa.Table(
    "memory_tags",
    metadata,
    sa.Column("memory_seq", BigId, sa.ForeignKey("memories.seq", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(128), primary_key=True),
    sa.Index("ix_memory_tags_tag", "tag", "memory_seq"),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("source_id", sa.String(36), nullable=False),
    sa.Column("target_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("stamp", sa.String(200)),  # of the last weight written: last writer wins (sync)
    sa.PrimaryKeyConstraint("source_id", "target_id", "kind"),
    sa.Index("ix_links_target", "target_id"),
)

# The outbox: every change, written in the same transaction as the change itself.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("memory_id", sa.String(36), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("hlc", sa.String(40), nullable=False),
    sa.Column("vector_clock", Json, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Sync: an event applied from another replica keeps its id there ("<replica>:<seq>"), so
    # a second delivery is known; one of this database's own waits here until published.
    sa.Column("origin", sa.String(100)),
    sa.Column("pending", sa.Boolean),
    sa.Index("ix_changes_ns_seq", "namespace", "seq"),
    sa.Index("ix_changes_ns_memory", "namespace", "memory_id"),  # a purge scrubs a memory's events
    sa.Index(
        "ux_changes_origin",
        "origin",
        unique=True,
        sqlite_where=sa.text("origin IS NOT NULL"),
        postgresql_where=sa.text("origin IS NOT NULL"),
    ),
    sa.Index(
        "ix_changes_pending",
        "seq",
        sqlite_where=sa.text("pending IS NOT NULL"),
        postgresql_where=sa.text("pending IS NOT NULL"),
    ),
)

namespace_config = sa.Table(
    "namespace_config",
    metadata,
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("config", Json, nullable=False),
)

meta = sa.Table(
    "stellar_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Security (stellar_core/security): roles per namespace, API keys, the audit log.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("namespace", sa.String(128), nullable=False),  # a name, "prefix-*" or "*"
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("granted_by", sa.String(128), nullable=False),
    sa.Column("granted_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("principal", "namespace"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # SHA-256 of the key's secret part
    sa.Column("label", sa.String(128)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Index("ix_api_keys_principal", "principal"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("namespace", sa.String(128)),
    sa.Column("memory_ids", Json, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_at", "at"),
)


# Sync (stellar_core/sync, decision 0030): recall counts of other replicas (a counter per
# replica that only grows; this database's own count is the rest of ``recall_count``) ...
recall_counts = sa.Table(
    "recall_counts",
    metadata,
    sa.Column("memory_id", sa.String(36), nullable=False),
    sa.Column("replica", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("memory_id", "replica"),
)

# ... concurrent edits, both versions kept until someone resolves them ...
conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("memory_id", sa.String(36), nullable=False),
    sa.Column("fields", Json, nullable=False),
    sa.Column("winner", Json, nullable=False),  # {"values", "stamp", "vector_clock"}
    sa.Column("loser", Json, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("resolution", sa.Text),
    sa.Index("ix_conflicts_ns_memory", "namespace", "memory_id"),
)

# ... and events that cannot be applied yet (their memory has not arrived) or at all (bad
# input: kept for inspection, never dropped).
sync_held = sa.Table(
    "sync_held",
    metadata,
    sa.Column("origin", sa.String(100), primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("awaits", sa.String(36)),  # the memory it waits for; NULL: refused
    sa.Column("event", sa.Text, nullable=False),  # as received
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("held_at", sa.Float, nullable=False),
    sa.Index("ix_sync_held_awaits", "namespace", "awaits"),
)
