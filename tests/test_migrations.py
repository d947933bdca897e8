"""Databases written by earlier schema versions open, upgrade and keep every memory findable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from stellar_core.store.database import MIGRATIONS
from stellar_core.store.dialect import namespace_token
from stellar_core.store.schema import changes, memories
from tests.fakes import HashEmbedder

TURNS = [
    "user: where did the team hold the launch review?",
    "assistant: in the observatory library on the second floor",
    "user: thanks, and who chaired it?",
]


def _database_at(path: Path | str, revision: str) -> sa.Engine:
    """A database (a SQLite file, or a URL) migrated up to ``revision``."""
    engine = sa.create_engine(str(path) if "://" in str(path) else f"sqlite:///{path}")
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


@pytest.mark.backends
def test_0011_strips_the_texts_of_merged_memories_from_merge_histories(
    tmp_path: Path, open_memory, database_url
) -> None:
    engine = _database_at(database_url(tmp_path / "old.db"), "0009")
    entry = {"id": "b" * 32, "content": "the vault code is 44170925", "metadata": {"by": 1}, "tags": ["x"]}
    history = {"merged": [entry, "a caller's own value"], "owner": "ines"}
    with engine.begin() as conn:
        for i, meta in enumerate([history, {"merged": 3}]):  # a "merged" that is no history stays
            conn.execute(memories.insert().values(_row(i, meta)))
        for payload in ({"metadata": history}, {"importance": 0.7}):
            conn.execute(changes.insert().values(_event(0, payload)))
    engine.dispose()

    mem = open_memory(tmp_path / "old.db", embedder=HashEmbedder())
    stripped = {"merged": [{"id": "b" * 32, "tags": ["x"]}, "a caller's own value"], "owner": "ines"}
    assert [mem.get(f"{i:032x}").metadata for i in (0, 1)] == [stripped, {"merged": 3}]
    with mem.engine.db.read() as conn:
        payloads = conn.execute(sa.select(changes.c.payload).order_by(changes.c.seq)).scalars().all()
    assert payloads == [{"metadata": stripped}, {"importance": 0.7}]


def _row(i: int, meta: dict[str, Any]) -> dict[str, Any]:
    """A memories row of schema 0009."""
    return {
        "id": f"{i:032x}", "namespace": "default", "content": f"memory {i}", "content_hash": f"{i:064x}",
        "importance": 0.5, "pinned": False, "recall_count": 0, "created_at": 1e9, "updated_at": 1e9,
        "last_access_at": 1e9, "zone": "inner", "score": 0.6, "meta": meta, "encrypted": False,
        "origin_agent": "a", "hlc": f"{i:013d}.00000", "vector_clock": {"a": 1},
    }  # fmt: skip


def _event(i: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": "default", "memory_id": f"{i:032x}", "op": "update", "agent": "a",
        "hlc": f"{i:013d}.00000", "vector_clock": {}, "payload": payload, "created_at": 1e9,
    }  # fmt: skip
