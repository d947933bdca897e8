"""PostgreSQL: the full-text index keeps at most 256 kB of new entries in its pending list
(the default is 4 MB).

Every search of a GIN index reads the whole pending list, whatever the query. Filled to the
default by a batch load it held 377 pages, and each of the lexical arm's index scans paid
2-3 ms for them: at 1M memories a 3-term conjunction took 2.5 ms, 0.15 ms once the list was
flushed, and the lexical arm's p95 fell 49 -> 29 ms. Flushing more often costs batch inserts
nothing measurable (3,201/s at 4 MB, 3,174/s at 256 kB, alternating in one run).

Revision ID: 0008
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_memory_text_doc SET (gin_pending_list_limit = 256)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_memory_text_doc RESET (gin_pending_list_limit)")
