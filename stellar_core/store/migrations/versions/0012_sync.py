"""Sync between replicas (decision 0030): the change log becomes an outbox that is published
(``pending``) and an inbox that knows what it applied (``origin``); per-field stamps for the
last-writer-wins merge; per-replica recall counters; conflicts; held events.

Existing changes are not published: a replica that joins bootstraps from a snapshot.

Revision ID: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("changes") as t:
        t.add_column(sa.Column("origin", sa.String(100)))
        t.add_column(sa.Column("pending", sa.Boolean))
    op.create_index(
        "ux_changes_origin", "changes", ["origin"], unique=True,
        sqlite_where=sa.text("origin IS NOT NULL"), postgresql_where=sa.text("origin IS NOT NULL"),
    )  # fmt: skip
    op.create_index(
        "ix_changes_pending", "changes", ["seq"],
        sqlite_where=sa.text("pending IS NOT NULL"), postgresql_where=sa.text("pending IS NOT NULL"),
    )  # fmt: skip
    with op.batch_alter_table("memories") as t:
        t.add_column(sa.Column("stamps", Json))
    with op.batch_alter_table("links") as t:
        t.add_column(sa.Column("stamp", sa.String(200)))
    op.create_table(
        "recall_counts",
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("memory_id", "replica"),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("fields", Json, nullable=False),
        sa.Column("winner", Json, nullable=False),
        sa.Column("loser", Json, nullable=False),
        sa.Column("detected_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("resolution", sa.Text),
    )
    op.create_index("ix_conflicts_ns_memory", "conflicts", ["namespace", "memory_id"])
    op.create_table(
        "sync_held",
        sa.Column("origin", sa.String(100), primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("awaits", sa.String(36)),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("held_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sync_held_awaits", "sync_held", ["namespace", "awaits"])


def downgrade() -> None:
    raise NotImplementedError("downgrades are not supported: restore a backup instead")
