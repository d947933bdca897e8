"""Forgetting that forgets (decision 0029): merge histories lose the texts of the memories
merged.

A purge empties the payloads of the purged memories' events, found through the index by
memory that 0010 added. Dedup used to copy a merged memory's content and
metadata into the survivor's ``metadata["merged"]``, and so into the survivor's events, where
no purge of the merged memory reached them; the entries keep ids, times, tags and counts.

Revision ID: 0011
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    _strip_histories("memories", "meta", ())
    _strip_histories("changes", "payload", ("metadata",))


def _strip_histories(table: str, column: str, path: Sequence[str]) -> None:
    """Drop "content" and "metadata" from the merge-history entries of the JSON documents at
    ``path`` in ``column``."""
    bind = op.get_bind()
    t = sa.table(table, sa.column("seq", sa.BigInteger), sa.column(column, Json))
    doc: Any = t.c[column]
    if bind.dialect.name == "postgresql":
        has = doc[(*path, "merged")].is_not(None) if path else doc["merged"].is_not(None)
    else:
        has = sa.func.json_extract(doc, "$." + ".".join((*path, "merged"))).is_not(None)
    for seq, value in bind.execute(sa.select(t.c.seq, doc).where(has)).all():
        inner = value
        for key in path:
            inner = inner[key]
        if not isinstance(inner.get("merged"), list):
            continue
        inner["merged"] = [
            {k: v for k, v in e.items() if k not in ("content", "metadata")} if isinstance(e, dict) else e
            for e in inner["merged"]
        ]
        bind.execute(t.update().where(t.c.seq == seq).values({column: value}))


def downgrade() -> None:
    raise NotImplementedError("downgrades are not supported: restore a backup instead")
