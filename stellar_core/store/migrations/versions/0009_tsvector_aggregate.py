"""PostgreSQL: ``stellar_tsvector_agg``, the concatenation of ``tsvector``s as an aggregate.

A memory's thread context is its neighbours' texts. Parsed as one joined text per row, a
batch of threads parsed each text about three times; with this aggregate each text is parsed
once and the contexts are put together from the results (search/pgtext.py).

Revision ID: 0009
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE AGGREGATE stellar_tsvector_agg(tsvector) "
            "(SFUNC = tsvector_concat, STYPE = tsvector, INITCOND = '')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP AGGREGATE stellar_tsvector_agg(tsvector)")
