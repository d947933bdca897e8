"""PostgreSQL: BM25 statistics per term (documents, and bounds on one document's score).

With them the lexical arm stops scoring every memory that shares a common word with the
query: it scores the few that match the rare terms, or several common ones at once, and
the bounds prove nothing else can reach the top (search/pgtext.py). Measured at 1M memories:
the exhaustive BM25 took ~370 ms a query.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's FTS5 keeps its own statistics
    op.create_table(
        "text_terms",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("lexeme", sa.Text, primary_key=True),
        sa.Column("docs", sa.BigInteger, nullable=False),
        sa.Column("max_content", sa.Integer, nullable=False),  # most hits in one memory's content
        sa.Column("max_context", sa.Integer, nullable=False),  # ... in one memory's thread context
        sa.Column("min_length", sa.Integer, nullable=False),  # shortest memory holding the term
    )
    op.execute(
        "INSERT INTO text_terms (namespace, lexeme, docs, max_content, max_context, min_length) "
        "SELECT t.namespace, u.lexeme, count(*), "
        "max(cardinality(array_positions(u.weights, 'A'))), "
        "max(cardinality(u.weights) - cardinality(array_positions(u.weights, 'A'))), "
        "min(t.length) FROM memory_text t, unnest(t.doc) u GROUP BY t.namespace, u.lexeme"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("text_terms")
