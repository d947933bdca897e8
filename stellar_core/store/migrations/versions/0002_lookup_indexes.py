"""Indexes for content-hash lookups (dedup, embedding reuse) and tombstone purging.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_memories_hash", "memories", ["content_hash"])
    op.execute(
        "CREATE INDEX ix_memories_tombstones ON memories (namespace, deleted_at) WHERE deleted_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_memories_tombstones", "memories")
    op.drop_index("ix_memories_hash", "memories")
