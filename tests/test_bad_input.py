"""Bad input is refused with a clear error; a refused call never loses or changes stored data."""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from stellar_core import (
    ConfigurationError,
    Embedder,
    NotFoundError,
    SchemaVersionError,
    Settings,
    StellarMemory,
    StorageError,
    ValidationError,
)
from stellar_core.errors import PermanentError
from stellar_core.store.schema import changes, links, memories

MISSING = "0123456789abcdef0123456789abcdef"


class HashEmbedder:
    """A tiny deterministic embedder of another vector space (implements ``Embedder``)."""

    model = "test/sha256-8d"
    dim = 8

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [list(hashlib.sha256(t.encode()).digest()[:8]) for t in texts]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), 8) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


pytestmark = pytest.mark.backends


def seed(mem: StellarMemory) -> None:
    """Two memories in a thread, a link and a memory in another namespace."""
    a, b, _ = mem.store_many(
        [
            {"content": "Dana owns the billing service", "thread": "chat", "tags": ["people"]},
            {"content": "billing deploys on Tuesdays", "thread": "chat"},
            "the office closes at six",
        ]
    )
    mem.link(a.id, b.id, kind="about")
    mem.store("a memory of namespace b", namespace="b")


def snapshot(mem: StellarMemory) -> tuple[str, ...]:
    """Everything stored: both namespaces' exports and the row counts of every table we write."""
    with mem.engine.db.read() as conn:
        counts = [
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (memories, links, changes)
        ]
    return (
        json.dumps(mem.export(), sort_keys=True),
        json.dumps(mem.export(namespace="b"), sort_keys=True),
        json.dumps(counts),
    )


@pytest.fixture
def seeded(open_memory, tmp_path: Path):
    """Opens the test's database, seeded: ``seeded(**open_memory_kwargs)``."""

    def _open(**kwargs: object) -> StellarMemory:
        mem = open_memory(tmp_path / "seeded.db", **kwargs)
        if not mem.stats().memories:
            seed(mem)
        return mem

    return _open


@pytest.fixture
def smem(seeded) -> StellarMemory:
    return seeded()


def refuse(mem: StellarMemory, call, error: type[Exception] = ValidationError, match=None) -> None:
    """``call()`` raises ``error`` and changes nothing that was stored."""
    before = snapshot(mem)
    with pytest.raises(error, match=match):
        call()
    assert snapshot(mem) == before, "a refused call changed stored data"
    assert mem.stats().memories == 3 and mem.stats(namespace="b").memories == 1


def ids(mem: StellarMemory) -> list[str]:
    return [x["id"] for x in mem.export()["memories"]]


# --- content --------------------------------------------------------------------------------------

BAD_CONTENT = [
    pytest.param("", id="empty"),
    pytest.param("  \n\t ", id="whitespace"),
    pytest.param("x" * 51, id="oversized"),
    pytest.param("text with a \x00 NUL", id="nul"),
    pytest.param(42, id="int"),
    pytest.param(None, id="none"),
    pytest.param(b"bytes are not text", id="bytes"),
    pytest.param(["a", "list"], id="list"),
    pytest.param(
        "lone surrogate \ud800",
        id="surrogate",
    ),
]


@pytest.fixture
def small(seeded) -> StellarMemory:
    return seeded(settings=Settings(max_content_chars=50))


@pytest.mark.parametrize("content", BAD_CONTENT)
def test_bad_content_in_store(small: StellarMemory, content) -> None:
    refuse(small, lambda: small.store(content))


@pytest.mark.parametrize("content", BAD_CONTENT)
def test_bad_content_in_store_many_refuses_the_whole_batch(small: StellarMemory, content) -> None:
    refuse(small, lambda: small.store_many(["a fine memory", {"content": content}]))


@pytest.mark.parametrize("content", [p for p in BAD_CONTENT if p.id != "none"])  # None: unchanged
def test_bad_content_in_update(small: StellarMemory, content) -> None:
    refuse(small, lambda: small.update(ids(small)[0], content=content))


@pytest.mark.parametrize("query", BAD_CONTENT)
def test_bad_recall_query(small: StellarMemory, query) -> None:
    refuse(small, lambda: small.recall(query))


def test_content_at_the_limit_is_accepted(open_memory) -> None:
    mem = open_memory(settings=Settings(max_content_chars=50))
    assert len(mem.store("y" * 50).content) == 50
    with pytest.raises(ValidationError, match="max_content_chars"):
        mem.store("y" * 51)
    assert mem.stats().memories == 1


# --- importance and other fields ------------------------------------------------------------------

BAD_IMPORTANCE = [-0.1, 1.5, math.nan, math.inf, -math.inf, True, False, "high", "0.5", [0.5]]


@pytest.mark.parametrize("importance", [*BAD_IMPORTANCE, None])
def test_bad_importance_in_store(smem: StellarMemory, importance) -> None:
    refuse(smem, lambda: smem.store("an important fact", importance=importance))


@pytest.mark.parametrize("importance", BAD_IMPORTANCE)
def test_bad_importance_in_update(smem: StellarMemory, importance) -> None:
    refuse(smem, lambda: smem.update(ids(smem)[0], importance=importance))


def test_importance_bounds_are_accepted(mem: StellarMemory) -> None:
    values = [0, 0.0, 1, 1.0, 0.25]
    out = mem.store_many([{"content": f"importance {v!r}", "importance": v} for v in values])
    assert [x.importance for x in out] == values
    assert all(isinstance(x.importance, float) for x in out)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"position": 3}, id="position-without-thread"),
        pytest.param({"thread": "t", "position": -1}, id="negative-position"),
        pytest.param({"thread": "t", "position": True}, id="bool-position"),
        pytest.param({"thread": "t", "position": "3"}, id="str-position"),
        pytest.param({"thread": "t", "position": 2.0}, id="float-position"),
        pytest.param({"thread": ""}, id="empty-thread"),
        pytest.param({"thread": "   "}, id="blank-thread"),
        pytest.param({"thread": "t" * 257}, id="long-thread"),
        pytest.param({"thread": 7}, id="int-thread"),
        pytest.param({"pinned": "yes"}, id="str-pinned"),
        pytest.param({"pinned": 1}, id="int-pinned"),
        pytest.param({"tags": "ops"}, id="str-tags"),
        pytest.param({"tags": [""]}, id="empty-tag"),
        pytest.param({"tags": ["x" * 129]}, id="long-tag"),
        pytest.param({"tags": [5]}, id="int-tag"),
        pytest.param({"tags": 5}, id="int-tags"),
        pytest.param({"metadata": ["not", "a", "mapping"]}, id="list-metadata"),
        pytest.param({"metadata": {"f": object()}}, id="unserialisable-metadata"),
        pytest.param({"source": 5}, id="int-source"),
        pytest.param({"source": {"url": "https://x"}}, id="source-without-type"),
        pytest.param({"source": {"type": "web", "colour": "red"}}, id="source-unknown-key"),
        pytest.param({"principal": ""}, id="empty-principal"),
        pytest.param({"principal": 5}, id="int-principal"),
        pytest.param(
            {"thread": "t", "position": 2**63},
            id="huge-position",
        ),
        pytest.param(
            {"source": {"type": "web", "chunk": "three"}},
            id="str-source-chunk",
        ),
        pytest.param(
            {"source": {"type": "web", "ingested_at": "yesterday"}},
            id="str-ingested-at",
        ),
        pytest.param(
            {"source": {"type": ""}},
            id="empty-source-type",
        ),
    ],
)
def test_bad_fields_in_store(smem: StellarMemory, kwargs) -> None:
    refuse(smem, lambda: smem.store("a memory with a bad field", **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pinned": "yes"},
        {"tags": "ops"},
        {"tags": [""]},
        {"metadata": 5},
        {"metadata": {"f": {1, 2}}},
        {"principal": ""},
    ],
)
def test_bad_fields_in_update(smem: StellarMemory, kwargs) -> None:
    refuse(smem, lambda: smem.update(ids(smem)[0], **kwargs))


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([{"content": "x", "colour": "red"}], id="unknown-key"),
        pytest.param(["fine", {"content": "fine too", "importance": 0.2, "Importance": 0.9}], id="key-case"),
        pytest.param(["fine", 5], id="int-item"),
        pytest.param(["fine", None], id="none-item"),
        pytest.param(["fine", ("a", "tuple")], id="tuple-item"),
        pytest.param(
            "abc",
            id="str-batch",
        ),
        pytest.param(
            None,
            id="none-batch",
        ),
        pytest.param(
            5,
            id="int-batch",
        ),
    ],
)
def test_bad_store_many(smem: StellarMemory, items) -> None:
    refuse(smem, lambda: smem.store_many(items))


# --- ids, links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda mem, known: mem.get(MISSING), id="get"),
        pytest.param(lambda mem, known: mem.update(MISSING, importance=0.9), id="update"),
        pytest.param(lambda mem, known: mem.update(MISSING, content="new text"), id="update-content"),
        pytest.param(lambda mem, known: mem.forget(MISSING), id="forget"),
        pytest.param(lambda mem, known: mem.links(MISSING), id="links"),
        pytest.param(lambda mem, known: mem.link(MISSING, known), id="link-source"),
        pytest.param(lambda mem, known: mem.link(known, MISSING), id="link-target"),
        pytest.param(lambda mem, known: mem.get(known.upper()), id="get-case"),
    ],
)
def test_unknown_ids_raise_not_found(smem: StellarMemory, call) -> None:
    known = ids(smem)[0]
    refuse(smem, lambda: call(smem, known), NotFoundError, match="no memory")


@pytest.mark.parametrize("bad_id", [None, 123, b"abc", ["x"]])
@pytest.mark.parametrize("method", ["get", "forget", "links"])
def test_non_string_ids_are_refused(smem: StellarMemory, method, bad_id) -> None:
    refuse(smem, lambda: getattr(smem, method)(bad_id))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": 0},
        {"weight": -0.5},
        {"weight": 1.5},
        {"weight": math.nan},
        {"weight": True},
        {"weight": "heavy"},
        {"kind": ""},
        {"kind": "   "},
        {"kind": "k" * 65},
        {"kind": 5},
    ],
)
def test_bad_link_arguments(smem: StellarMemory, kwargs) -> None:
    a, b = ids(smem)[:2]
    refuse(smem, lambda: smem.link(a, b, **kwargs))


def test_self_link_and_bad_direction(smem: StellarMemory) -> None:
    a = ids(smem)[0]
    refuse(smem, lambda: smem.link(a, a))
    refuse(smem, lambda: smem.links(a, direction="sideways"))


# --- namespaces -----------------------------------------------------------------------------------

BAD_NAMESPACES = [
    "",
    "bad name",
    "x" * 200,
    "-leading-dash",
    "tab\there",
    "ümlaut",
    123,
    b"bytes",
    ["a"],
]


@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda mem, ns: mem.store("namespaced fact", namespace=ns), id="store"),
        pytest.param(lambda mem, ns: mem.store_many(["one", "two"], namespace=ns), id="store_many"),
        pytest.param(lambda mem, ns: mem.get(ids(mem)[0], namespace=ns), id="get"),
        pytest.param(lambda mem, ns: mem.forget(ids(mem)[0], namespace=ns), id="forget"),
        pytest.param(lambda mem, ns: mem.recall("billing", namespace=ns), id="recall"),
        pytest.param(lambda mem, ns: mem.stats(namespace=ns), id="stats"),
        pytest.param(lambda mem, ns: mem.export(namespace=ns), id="export"),
    ],
)
def test_invalid_namespaces_are_refused(smem: StellarMemory, call, namespace) -> None:
    refuse(smem, lambda: call(smem, namespace), match="namespace")


def test_longest_namespace_is_accepted(mem: StellarMemory) -> None:
    ns = "n" * 128
    assert mem.store("at the limit", namespace=ns).namespace == ns
    with pytest.raises(ValidationError):
        mem.store("over the limit", namespace=ns + "n")


def test_namespace_none_means_the_instance_namespace(open_memory) -> None:
    mem = open_memory(namespace="team")
    assert mem.store("explicit None", namespace=None).namespace == "team"
    assert mem.stats(namespace=None).namespace == "team"


@pytest.mark.parametrize(
    "namespace",
    [
        pytest.param(
            "",
        ),
        "bad name",
        123,
    ],
)
def test_invalid_instance_namespace(open_memory, namespace) -> None:
    with pytest.raises(ValidationError):
        open_memory(namespace=namespace)


# --- recall arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"zones": "mars"}, id="zone-str"),
        pytest.param({"zones": ["core", "pluto"]}, id="zone-list"),
        pytest.param({"zones": [None]}, id="zone-none"),
        pytest.param(
            {"zones": 5},
            id="zone-int",
        ),
        pytest.param({"k": 0}, id="k0"),
        pytest.param({"k": -1}, id="k-negative"),
        pytest.param({"k": 1001}, id="k-huge"),
        pytest.param({"k": True}, id="k-bool"),
        pytest.param({"k": 2.5}, id="k-float"),
        pytest.param({"k": "10"}, id="k-str"),
        pytest.param({"tags": "people"}, id="tags-str"),
        pytest.param({"since": datetime(2024, 1, 1)}, id="naive-datetime"),
        pytest.param({"since": "yesterday"}, id="since-str"),
        pytest.param({"until": True}, id="until-bool"),
    ],
)
def test_bad_recall_arguments(smem: StellarMemory, kwargs) -> None:
    refuse(smem, lambda: smem.recall("billing service", **kwargs))


@pytest.mark.parametrize(
    "query",
    [
        'say "hi',
        "AND OR NOT",
        "col:val",
        "*",
        "(unbalanced",
        "NEAR(a b)",
        "^start",
        "!!!",
        "-",
        "😀",
    ],
)
def test_full_text_syntax_in_queries_is_harmless(seeded, query) -> None:
    mem = seeded()
    hits = mem.recall(query, k=3)
    assert len(hits) <= 3
    assert all(h.memory.namespace == "default" for h in hits)
    assert mem.stats().memories == 3


# --- damaged, foreign and newer databases ---------------------------------------------------------


@pytest.mark.sqlite_only  # it writes the database file itself
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(random.Random(7).randbytes(8192), id="random-bytes"),
        pytest.param(b"hello, I am a text file and not a database\n" * 20, id="text"),
        pytest.param(b"SQLite format 3\x00" + random.Random(8).randbytes(4080), id="bad-header"),
    ],
)
def test_a_file_that_is_not_a_database(tmp_path: Path, open_memory, data: bytes) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(data)
    with pytest.raises(StorageError, match="not a Stellar Memory database"):
        open_memory(path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]


@pytest.mark.sqlite_only  # it writes the database file itself
def test_a_database_of_a_newer_schema(tmp_path: Path, open_memory) -> None:
    path = tmp_path / "newer.db"
    mem = open_memory(path)
    stored = mem.store_many(["kept one", "kept two"])
    mem.close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.close()

    with pytest.raises(SchemaVersionError, match="9999") as raised:
        open_memory(path)
    assert isinstance(raised.value, StorageError) and isinstance(raised.value, PermanentError)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
        rows = con.execute("SELECT id, content FROM memories ORDER BY seq").fetchall()
    con.close()
    assert rows == [(x.id, x.content) for x in stored]


@pytest.mark.sqlite_only  # it writes the database file itself
def test_another_applications_database_is_left_alone(tmp_path: Path, open_memory) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE people (name TEXT)")
        con.execute("INSERT INTO people VALUES ('Erin')")
    con.close()
    try:
        with pytest.raises(StorageError):
            open_memory(path)
    finally:
        with sqlite3.connect(path) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        con.close()
        assert tables == ["people"]


def test_a_different_embedding_model_is_refused(tmp_path: Path, open_memory) -> None:
    assert isinstance(HashEmbedder(), Embedder)
    path = tmp_path / "model.db"
    mem = open_memory(path)
    kept = mem.store("stored with all-MiniLM-L6-v2")
    mem.close()

    with pytest.raises(ConfigurationError, match="test/sha256-8d"):
        open_memory(path, embedder=HashEmbedder())
    again = open_memory(path)
    assert again.get(kept.id) == kept
    assert again.stats().memories == 1


def test_the_test_embedder_works_on_its_own_database(tmp_path: Path, open_memory) -> None:
    mem = open_memory(tmp_path / "hash.db", embedder=HashEmbedder())
    x = mem.store("vectors from a tiny hash model")
    assert mem.recall("vectors from a tiny hash model", k=1)[0].memory.id == x.id
    with pytest.raises(ConfigurationError):
        open_memory(tmp_path / "hash.db")  # and the real model is refused there
