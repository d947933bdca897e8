"""An index on (namespace, source_url): connectors find a source's memories by it, to skip an
unchanged source, replace a changed one and forget a deleted one.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_memories_ns_source", "memories", ["namespace", "source_url"])


def downgrade() -> None:
    op.drop_index("ix_memories_ns_source", "memories")
