"""Security: grants of roles per namespace, API keys, the hash-chained audit log, and the keyed
token text that the full-text index holds for an encrypted memory (``search_text``), and the
indexes key rotation and purging look rows up by.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=False),  # a name, "prefix-*" or "*"
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("principal", "namespace"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(128)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_api_keys_principal", "api_keys", ["principal"])
    op.create_table(
        "audit_log",
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
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    with op.batch_alter_table("memories") as batch:
        batch.add_column(sa.Column("search_text", sa.Text))
    # Key rotation finds the memories sealed with an old key, and their change events.
    op.create_index("ix_memories_ns_key", "memories", ["namespace", "key_id"])
    op.create_index("ix_changes_ns_memory", "changes", ["namespace", "memory_id"])


def downgrade() -> None:
    op.drop_index("ix_changes_ns_memory", "changes")
    op.drop_index("ix_memories_ns_key", "memories")
    with op.batch_alter_table("memories") as batch:
        batch.drop_column("search_text")
    op.drop_table("audit_log")
    op.drop_index("ix_api_keys_principal", "api_keys")
    op.drop_table("api_keys")
    op.drop_table("grants")
