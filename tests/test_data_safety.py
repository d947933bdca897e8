"""Data safety, on both backends: what probing found broken, each reproduced first.

- one import could make the database unopenable (a malformed clock stamp);
- concurrent updates lost vector-clock increments, and an update racing a forget wrote to the
  tombstone (PostgreSQL);
- a reader saw an old version after Redis had missed a writer's invalidation;
- hostile values raised raw errors, and PostgreSQL refused what SQLite stored (so a SQLite
  export did not import into PostgreSQL).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellar_core import Memory, Principal, Settings, StellarMemory, SystemClock, ValidationError
from stellar_core.store.schema import changes
from tests.fakes import HashEmbedder
from tests.services import Redis

pytestmark = pytest.mark.backends


def state(mem: StellarMemory) -> tuple[str, int]:
    """Everything a refused call must leave as it was: every namespace's export, the change log."""
    with mem.engine.db.read() as conn:
        logged = int(conn.execute(sa.select(sa.func.count()).select_from(changes)).scalar_one())
    docs = [mem.export(namespace=ns) for ns in mem.namespaces()]
    return json.dumps(docs, sort_keys=True), logged


# --- imports ------------------------------------------------------------------------------------


def exported(mem: StellarMemory, **changes_to_first: Any) -> dict[str, Any]:
    mem.store_many(["the backup window is 02:00 UTC", "Ines owns the rota"], namespace="src")
    document = mem.export(namespace="src")
    document["memories"][0].update(changes_to_first)
    return document


@pytest.mark.parametrize(
    "field, value",
    [
        ("hlc", "zzz"),
        ("hlc", "1700000000000.1"),
        ("pinned", "yes"),
        ("created_at", float("nan")),
        ("updated_at", float("inf")),
        ("score", float("nan")),
        ("score", 7.0),
        ("recall_count", 2**40),
        ("origin_agent", "a" * 200),
        ("vector_clock", {"agent": "many"}),
        ("metadata", {"x": float("nan")}),
        ("metadata", {"x": "a\x00b"}),
        ("source", {"type": "file", "url": "/x", "chunk": 2**63}),
        ("tags", ["ok", "\ud800"]),
        ("id", "x" * 40),
    ],
)
def test_an_import_with_a_bad_field_is_refused_and_the_database_still_opens(
    open_memory, tmp_path: Path, field: str, value: Any
) -> None:
    mem = open_memory(tmp_path / "db.db")
    document = exported(mem, **{field: value})
    before = state(mem)
    with pytest.raises(ValidationError):
        mem.import_(document, namespace="copy")
    assert state(mem) == before
    mem.close()
    again = open_memory(tmp_path / "db.db")  # a bad clock stamp once made every open fail
    assert again.stats(namespace="src").memories == 2


def test_an_import_recomputes_the_content_hash(open_memory, tmp_path: Path) -> None:
    mem = open_memory()
    document = exported(mem, content_hash="")
    other = open_memory(tmp_path / "other.db")
    assert other.import_(document).imported == 2
    copy = other.export(namespace="src")["memories"]
    original = mem.export(namespace="src")["memories"]
    assert sorted(x["content_hash"] for x in copy) == sorted(x["content_hash"] for x in original)
    # dedup by content finds the imported memory
    assert other.store("the backup window is 02:00 UTC", namespace="src").id in {x["id"] for x in copy}


def test_an_empty_export_imports_as_nothing(open_memory) -> None:
    mem = open_memory()
    report = mem.import_(mem.export(namespace="empty"), namespace="other")
    assert (report.imported, report.skipped, report.links) == (0, 0, 0)


@pytest.mark.sqlite_only  # it opens one database of each kind itself
def test_an_export_of_either_database_imports_into_the_other(open_memory, tmp_path: Path, postgres) -> None:
    """What one backend accepted, the other accepts: the validation layer is shared."""
    lite = open_memory(tmp_path / "lite.db")
    pg_url = postgres.create_database("crossing")
    with StellarMemory(pg_url, embedder=lite.engine.embedder.inner, background=False) as pg:
        awkward = {
            "content": "Ünïcödé ✓ — 東京 \u2028 tabs\tand\nnewlines",
            "tags": ["emoji 🚀", "x" * 128],
            "metadata": {"nested": {"deep": [1, 2.5, None, True, "ü"]}, "big": 2**62, "neg": -0.125},
            "source": {"type": "file", "url": "/a/b.md", "chunk": 2**31 - 1, "ingested_at": 1.5},
            "thread": "t" * 256,
            "position": 2**31 - 1,
            "importance": 1.0,
        }
        stored = lite.store(**awkward, principal="p" * 128)
        lite.link(stored.id, lite.store("the other end").id, kind="k" * 64)
        there = pg.import_(lite.export())
        assert (there.imported, there.links) == (2, 1)
        assert pg.export()["memories"] == lite.export()["memories"]  # every field as it was
        born = pg.store(**{**awkward, "content": "born on PostgreSQL"})
        back = lite.import_(pg.export())  # the two it has already are skipped by id
        assert (back.imported, back.skipped) == (1, 2)
        assert lite.get(born.id).metadata == awkward["metadata"]


# --- concurrent writers -------------------------------------------------------------------------

UPDATES = 25


def _update_many(url: str, agent: str, memory_id: str, n: int) -> int:
    with StellarMemory(url, embedder=HashEmbedder(), agent=agent, background=False) as mem:
        for i in range(n):
            mem.update(memory_id, importance=(i % 10) / 10, metadata={"by": agent, "i": i})
    return n


def test_concurrent_updates_keep_every_vector_clock_increment(open_memory, tmp_path: Path) -> None:
    mem = open_memory(tmp_path / "shared.db", embedder=HashEmbedder(), clock=SystemClock(), agent="origin")
    target = mem.store("one memory every agent updates")
    url = mem.engine.db.url.render_as_string(hide_password=False)
    agents = [f"agent-{i}" for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(len(agents)) as pool:
        pool.starmap(_update_many, [(url, a, target.id, UPDATES) for a in agents])
    final = mem.get(target.id)
    assert final.vector_clock == {"origin": 1, **dict.fromkeys(agents, UPDATES)}
    updates = Counter(e.agent for e in mem.events(limit=1000) if e.op == "update")
    assert updates == dict.fromkeys(agents, UPDATES)


def _forget(url: str, memory_id: str) -> str:
    with StellarMemory(url, embedder=HashEmbedder(), agent="janitor", background=False) as mem:
        return mem.forget(memory_id).id


def _update_until_gone(url: str, agent: str, memory_id: str) -> int:
    from stellar_core import NotFoundError

    done = 0
    with StellarMemory(url, embedder=HashEmbedder(), agent=agent, background=False) as mem:
        try:
            for i in range(200):
                mem.update(memory_id, content=f"rewritten by {agent} #{i}")
                done += 1
        except NotFoundError:
            pass
    return done


def test_an_update_racing_a_forget_never_writes_to_the_tombstone(open_memory, tmp_path: Path) -> None:
    mem = open_memory(tmp_path / "race.db", embedder=HashEmbedder(), clock=SystemClock())
    url = mem.engine.db.url.render_as_string(hide_password=False)
    for trial in range(3):
        target = mem.store(f"contested memory {trial}")
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            writers = [pool.apply_async(_update_until_gone, (url, f"w{i}", target.id)) for i in range(2)]
            gone = pool.apply_async(_forget, (url, target.id))
            gone.get(timeout=120)
            [w.get(timeout=120) for w in writers]
        ops = [
            (e.op, e.payload.get("content"))
            for e in reversed(mem.events(limit=1000))
            if e.memory_id == target.id
        ]
        forgot_at = [op for op, _ in ops].index("forget")
        assert all(op != "update" for op, _ in ops[forgot_at:]), ops  # nothing after the forget
        with mem.engine.db.read() as conn:
            row = conn.execute(
                sa.text("SELECT content, deleted_at FROM memories WHERE id = :i"), {"i": target.id}
            ).one()
        last_update = [c for op, c in ops[:forgot_at] if op == "update"]
        assert row.deleted_at is not None
        assert row.content == (last_update[-1] if last_update else f"contested memory {trial}")


# --- the cache after a Redis outage ----------------------------------------------------------------

WRITER = """
import sys
from stellar_core import Settings, StellarMemory
from tests.fakes import HashEmbedder
url, redis, x, y = sys.argv[1:]
with StellarMemory(url, embedder=HashEmbedder(), settings=Settings(redis_url=redis), background=False) as mem:
    mem.update(y, content="Y, second version")
    mem.update(x, content="X, second version")
"""


@pytest.mark.slow
def test_no_stale_read_after_a_redis_outage_that_a_writer_did_not_outlive(
    open_memory, tmp_path: Path
) -> None:
    redis = Redis(tmp_path / "redis")
    redis.start()
    try:
        settings = Settings(redis_url=redis.url(), cache_zones=["core", "inner", "outer", "belt", "cloud"])
        reader = open_memory(tmp_path / "cached.db", embedder=HashEmbedder(), settings=settings)
        x, y = reader.store("X, first version"), reader.store("Y, first version")
        assert reader.get(x.id).content == reader.get(x.id).content == "X, first version"  # cached
        reader.get(y.id)
        url = reader.engine.db.url.render_as_string(hide_password=False)
        assert redis._proc is not None
        os.kill(redis._proc.pid, signal.SIGSTOP)  # Redis stops answering; its keys stay
        try:
            root = Path(__file__).resolve().parents[1]
            done = subprocess.run(
                [sys.executable, "-c", WRITER, url, redis.url(), x.id, y.id],
                cwd=root, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr  # it wrote, could not invalidate, and exited
        finally:
            os.kill(redis._proc.pid, signal.SIGCONT)
        assert reader.get(x.id).content == "X, second version"
        assert reader.get(y.id).content == "Y, second version"
        assert reader.get(x.id).content == "X, second version"  # refilled with the new version
    finally:
        redis.stop()


# --- hostile values: a ValidationError, nothing changed ---------------------------------------------

LONE = "\ud800"
DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(50_000):
    _node["x"] = {}
    _node = _node["x"]

HOSTILE = [
    ("store", ("fact",), {"tags": [f"a{LONE}"]}),
    ("store", ("fact",), {"thread": f"t{LONE}"}),
    ("store", ("fact",), {"principal": f"p{LONE}"}),
    ("store", ("fact",), {"principal": "p" * 200}),
    ("store", ("fact",), {"source": {"type": f"s{LONE}"}}),
    ("store", ("fact",), {"source": {"type": "file", "url": "/x\x00"}}),
    ("store", ("fact",), {"source": {"type": "file", "chunk": 2**63}}),
    ("store", ("fact",), {"importance": 10**400}),
    ("store", ("fact",), {"metadata": DEEP}),
    ("store", ("fact",), {"metadata": {"x": float("nan")}}),
    ("store", ("fact",), {"metadata": {"x\x00": 1}}),
    ("store", ("fact",), {"metadata": {"x": "\x00"}}),
    ("store", ("fact",), {"metadata": {"x": 10**400}}),
    ("store", ("fact",), {"tags": ["\x00"]}),
    ("store", ("fact",), {"thread": "t", "position": 2**40}),
    ("recall", ("fact",), {"since": 10**400}),
    ("recall", ("fact",), {"until": float("nan")}),
    ("recall", ("fact",), {"source_type": [1, 2]}),
    ("recall", ("fact",), {"source_type": 5}),
    ("recall", ("fact",), {"tags": [LONE]}),
    ("get", (f"id{LONE}",), {}),
    ("get", ("x" * 37,), {}),
    ("forget", ("\x00",), {}),
    ("update", ("id",), {"metadata": DEEP}),
    ("update", ("id",), {"tags": [LONE]}),
    ("links", (f"id{LONE}",), {}),
    ("thread", (f"t{LONE}",), {}),
    ("configure_zones", (), {"thresholds": 5}),
    ("configure_zones", (), {"capacities": {"core": float("inf")}}),
    ("configure_zones", (), {"capacities": {"core": 2**40}}),
    ("configure_zones", (), {"thresholds": {"mars": 0.5}}),
    ("configure_zones", (), {"thresholds": {"core": float("nan")}}),
]


@pytest.mark.parametrize(
    "method, args, kwargs", HOSTILE, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(HOSTILE)]
)
def test_hostile_values_are_a_validation_error_and_change_nothing(
    open_memory, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    mem = open_memory()
    kept = mem.store("the backup window is 02:00 UTC", thread="t", tags=["ops"])
    args = tuple(kept.id if a == "id" else a for a in args)
    before = state(mem)
    with pytest.raises(ValidationError) as refused:
        getattr(mem, method)(*args, **kwargs)
    assert len(str(refused.value)) < 300  # the message does not repr the value whole
    assert state(mem) == before


def test_link_with_bad_text_is_refused(open_memory) -> None:
    mem = open_memory()
    a, b = mem.store("a"), mem.store("b")
    before = state(mem)
    for kwargs in ({"kind": f"k{LONE}"}, {"kind": "k\x00"}, {"kind": "k" * 65}, {"weight": 10**400}):
        with pytest.raises(ValidationError):
            mem.link(a.id, b.id, **kwargs)
    assert state(mem) == before


def test_principal_objects_are_checked_too(open_memory) -> None:
    mem = open_memory()
    with pytest.raises(ValidationError):
        mem.store("fact", principal=Principal("p" * 129))
    assert isinstance(mem.store("fact", principal=Principal("p" * 128)), Memory)
