"""Databases written by earlier schema versions open, upgrade and keep every memory findable."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from stellar_core.store.database import MIGRATIONS
from stellar_core.store.dialect import namespace_token

TURNS = [
    "user: where did the team hold the launch review?",
    "assistant: in the observatory library on the second floor",
    "user: thanks, and who chaired it?",
]


def _database_at(path: Path, revision: str) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_a_revision_0002_database_upgrades_with_vectors_and_text_intact(
    tmp_path: Path, open_memory, embedder
) -> None:
    path = tmp_path / "old.db"
    engine = _database_at(path, "0002")
    vectors = embedder.embed(TURNS)
    with engine.begin() as conn:
        for pos, (text, vec) in enumerate(zip(TURNS, vectors, strict=True)):
            seq = conn.execute(
                sa.text(
                    "INSERT INTO memories (id, namespace, content, content_hash, importance, pinned,"
                    " recall_count, created_at, updated_at, last_access_at, zone, score, meta, thread,"
                    " position, encrypted, embedding, origin_agent, hlc, vector_clock) VALUES"
                    " (:id, 'team', :c, :h, 0.5, 0, 0, 1e9, 1e9, 1e9, 'inner', 0.6, '{}', 'review',"
                    " :pos, 0, :emb, 'old-agent', :hlc, :vc) RETURNING seq"
                ),
                {"id": f"{pos:032x}", "c": text, "h": f"{pos:064x}", "pos": pos,
                 "emb": vec.astype("<f4").tobytes(), "hlc": f"{pos:013d}.00000",
                 "vc": json.dumps({"old-agent": 1})},
            ).scalar_one()  # fmt: skip
            context = "\n".join(t for t in TURNS if t != text)
            conn.execute(
                sa.text("INSERT INTO memories_fts (rowid, content, context, ns) VALUES (:s, :c, :x, :n)"),
                {"s": seq, "c": text, "x": context, "n": namespace_token("team")},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO changes (namespace, memory_id, op, agent, hlc, vector_clock, payload,"
                    " created_at) VALUES ('team', :id, 'store', 'old-agent', :hlc, '{}', '{}', 1e9)"
                ),
                {"id": f"{pos:032x}", "hlc": f"{pos:013d}.00000"},
            )
    engine.dispose()

    mem = open_memory(path, namespace="team")
    assert mem.get(f"{1:032x}").content == TURNS[1]
    hits = mem.recall("observatory library", k=1)
    assert hits[0].memory.content == TURNS[1]
    assert {"lexical", "vector"} <= set(hits[0].via)
    # The answer's words sit in its neighbours' context column, carried over as it was.
    asked = mem.recall("where was the launch review held", k=3)
    assert TURNS[1] in [h.memory.content for h in asked]
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("memories")}
    assert "memories_fts" not in tables and "memory_vectors" in tables
    assert "embedding" not in columns
