"""PostgreSQL: a short list per common term of the memories it weighs most in, and the most
a memory left off the list can weigh ("floor").

Scoring those lists bounds the rest of a common term's memories far more tightly than its
single best memory does, so the lexical arm stops after a few hundred memories where it
scored every one holding the term (search/pgtext.py). Measured at 1M memories, 200 queries:
p50 47 -> 14 ms, p95 311 -> 66 ms, the same results. The upkeep fills the lists.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's FTS5 ranks on its own
    op.create_table(
        "text_top",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("lexeme", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("key", sa.Float(53), nullable=False),  # the term's saturated frequency there
    )
    # The list of a term: how it was ranked (average length, context weight), its floor, and
    # the term's documents when it was built (it is rebuilt once they have doubled).
    op.add_column("text_terms", sa.Column("list_floor", sa.Float(53)))
    op.add_column("text_terms", sa.Column("list_avgdl", sa.Float(53)))
    op.add_column("text_terms", sa.Column("list_cw", sa.Float(53)))
    op.add_column("text_terms", sa.Column("list_docs", sa.BigInteger))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in ("list_docs", "list_cw", "list_avgdl", "list_floor"):
            op.drop_column("text_terms", column)
        op.drop_table("text_top")
