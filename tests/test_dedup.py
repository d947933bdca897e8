"""Near-duplicate consolidation on real databases: clusters, survivors, history, exclusions."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence

import numpy as np
import pytest
import sqlalchemy as sa

from stellar_core import Memory, NotFoundError, Settings, StellarMemory, ValidationError, Zone
from stellar_core.dedup import components, consolidate, near_pairs
from stellar_core.store.schema import changes
from stellar_core.validation import content_hash
from tests.fakes import HashEmbedder
from tests.helpers import import_memories

pytestmark = pytest.mark.backends

COPY = "Standup moves to 10:00 from Monday"


class FixedEmbedder(HashEmbedder):
    """A ``HashEmbedder`` that gives chosen texts chosen vectors (to set exact similarities)."""

    def __init__(self, chosen: dict[str, np.ndarray], dim: int = 384) -> None:
        super().__init__(dim, model="test/fixed-embedder")
        self._chosen = chosen

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = super().embed(texts)
        for i, text in enumerate(texts):
            if text in self._chosen:
                out[i] = self._chosen[text]
        return out


class VariantEmbedder(HashEmbedder):
    """A ``HashEmbedder`` blind to a trailing `` [n]``: "a [1]" and "a [2]" get one vector, so
    standalone memories (a namespace holds a text once) can be exact duplicates in meaning."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return super().embed([re.sub(r" \[\d+\]$", "", t) for t in texts])


def hashed(open_memory, **kwargs) -> StellarMemory:
    return open_memory(embedder=VariantEmbedder(), **kwargs)


def variant(i: int, text: str = COPY) -> str:
    return f"{text} [{i}]"


def copies(mem: StellarMemory, n: int, text: str = COPY, **kwargs) -> list[Memory]:
    """``n`` standalone memories with one meaning (one vector)."""
    return [mem.store(variant(i, text), **kwargs) for i in range(n)]


def restored(mem: StellarMemory, specs: Sequence[dict], text: str = COPY, prefix: str = "r") -> list[Memory]:
    """Memories of identical text with chosen statistics, through ``restore``."""
    now = mem.engine.clock.now()
    out = []
    for i, spec in enumerate(specs):
        fields = {
            "importance": 0.5,
            "pinned": False,
            "recall_count": 0,
            "created_at": now - 100 * (i + 1),
            **spec,
        }
        out.append(
            Memory(
                id=f"{prefix}-{i}",
                namespace=mem.namespace,
                content=variant(1000 + i, text),
                content_hash=content_hash(variant(1000 + i, text)),
                updated_at=now,
                last_recalled_at=None,
                last_access_at=now,
                zone=Zone.OUTER,
                score=0.2,
                thread=None,
                **fields,
            )
        )
    assert import_memories(mem, out).imported == len(out)
    return out


def alive(mem: StellarMemory, memory_id: str) -> bool:
    try:
        mem.get(memory_id)
    except NotFoundError:
        return False
    return True


# --- the real model: paraphrases ---------------------------------------------------------------


def test_paraphrases_merge_into_one_survivor_that_keeps_their_history(mem) -> None:
    plain = mem.store("The deploy key lives in the vault", importance=0.4, tags=["ops"], metadata={"by": 1})
    lower = mem.store("the deploy key lives in the vault.", importance=0.9, tags=["secrets"])
    loud = mem.store("The deploy key lives in the vault!", importance=0.6, thread="chat-7")
    ours = mem.store("Our deploy key lives in the vault", importance=0.5)  # 0.97 to plain only
    others = [
        mem.store("The build server restarts every night at two"),
        mem.store("Lunch is served at noon on Fridays"),
        mem.store("The staging database password rotates monthly"),
    ]

    result = consolidate(mem)

    assert (result.scanned, result.clusters, result.merged) == (6, 1, 2)  # the turn is no candidate
    assert json.loads(json.dumps(result.to_dict()))["merged"] == 2
    survivor = mem.get(lower.id)  # the most important: nobody recalled any of them yet
    assert survivor.content == lower.content and survivor.content_hash == lower.content_hash
    assert survivor.importance == 0.9
    assert survivor.tags == ("ops", "secrets")
    history = {e["id"]: e for e in survivor.metadata["merged"]}
    assert set(history) == {plain.id, ours.id}
    assert mem.get(loud.id) == loud  # a turn of a conversation: an event of its own, never merged
    # No texts: a merged memory's words go when it is purged (decision 0029).
    assert all("content" not in e and "metadata" not in e for e in history.values())
    assert history[plain.id]["tags"] == ["ops"]
    assert history[plain.id]["created_at"] == plain.created_at
    assert all(e["recall_count"] == 0 and e["merged_at"] == mem.engine.clock.now() for e in history.values())
    assert all(0.9 < e["similarity"] <= 1.0 for e in history.values())
    for gone in (plain, ours):
        assert not alive(mem, gone.id)
    for x in others:  # untouched, not even rewritten
        assert mem.get(x.id) == x

    hits = mem.recall("where is the deploy key kept?", k=3)
    assert hits[0].memory.id == lower.id
    assert {h.memory.id for h in hits}.isdisjoint({plain.id, ours.id})

    again = consolidate(mem)
    assert (again.scanned, again.clusters, again.merged) == (4, 0, 0)  # survivor and the 3 others


# --- survivors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "winner"),
    [
        ([{"recall_count": 0, "importance": 0.9}, {"recall_count": 5, "importance": 0.2}], 1),
        ([{"importance": 0.3}, {"importance": 0.8}, {"importance": 0.5}], 1),
        ([{"created_at": 2_000.0}, {"created_at": 1_000.0}, {"created_at": 3_000.0}], 1),
        ([{"recall_count": 9, "importance": 1.0}, {"pinned": True, "importance": 0.1}], 1),
    ],
    ids=["most-recalled", "most-important", "oldest", "pinned"],
)
def test_survivor_is_pinned_then_most_recalled_then_most_important_then_oldest(
    open_memory, specs, winner
) -> None:
    mem = hashed(open_memory)
    made = restored(mem, specs)
    result = consolidate(mem)
    assert (result.clusters, result.merged) == (1, len(made) - 1)
    survivor = mem.get(made[winner].id)
    assert survivor.importance == max(x.importance for x in made)
    assert survivor.pinned == made[winner].pinned
    history = {e["id"]: e for e in survivor.metadata["merged"]}
    assert set(history) == {x.id for x in made} - {survivor.id}
    for x in made:
        if x.id != survivor.id:
            assert not alive(mem, x.id)
            assert history[x.id]["recall_count"] == x.recall_count


def test_two_pinned_copies_both_stay(open_memory) -> None:
    mem = hashed(open_memory)
    made = restored(mem, [{"pinned": True}, {}, {"pinned": True}, {}])
    result = consolidate(mem)
    assert result.merged == 2
    assert alive(mem, made[0].id) and alive(mem, made[2].id)
    assert not alive(mem, made[1].id) and not alive(mem, made[3].id)
    folded = [e["id"] for i in (0, 2) for e in mem.get(made[i].id).metadata.get("merged", [])]
    assert sorted(folded) == [made[1].id, made[3].id]
    assert consolidate(mem).merged == 0


def test_between_two_pinned_memories_each_copy_goes_to_the_nearer(open_memory) -> None:
    # One chain at 0.95: x -0.99- p1 -0.96- p2 -0.99- y (x and y are 0.91 from the far end).
    theta, phi = np.arccos(0.96), np.arccos(0.99)
    e1, e2 = np.eye(384, dtype=np.float32)[:2]
    at = {name: np.cos(angle) * e1 + np.sin(angle) * e2 for name, angle in
          [("p1", 0.0), ("p2", theta), ("x", -phi), ("y", theta + phi)]}  # fmt: skip
    mem = open_memory(embedder=FixedEmbedder(at))
    p1, p2 = mem.store("p1", pinned=True, importance=0.9), mem.store("p2", pinned=True)
    x, y = mem.store("x"), mem.store("y")
    result = consolidate(mem)
    assert (result.clusters, result.merged) == (2, 2)
    assert [e["id"] for e in mem.get(p1.id).metadata["merged"]] == [x.id]
    assert [e["id"] for e in mem.get(p2.id).metadata["merged"]] == [y.id]


def test_history_is_written_once_persists_and_is_in_the_change_log(open_memory, tmp_path) -> None:
    mem = hashed(open_memory)
    first, second, third = copies(mem, 3, tags=["x"])
    assert consolidate(mem).merged == 2
    survivor = mem.get(first.id)  # all equal: the first stored

    fourth = mem.store(variant(9), metadata={"note": "late"})
    assert consolidate(mem).merged == 1  # the earlier history is kept, the new entry appended
    ids = [e["id"] for e in mem.get(first.id).metadata["merged"]]
    assert ids == [second.id, third.id, fourth.id]

    c = changes.c
    with mem.engine.db.read() as conn:
        ops = conn.execute(sa.select(c.memory_id, c.op).where(c.op.in_(["update", "forget"]))).all()
    assert sorted(ops) == sorted(
        [(first.id, "update"), (second.id, "forget"), (third.id, "forget"), (first.id, "update"),
         (fourth.id, "forget")]
    )  # fmt: skip

    mem.close()
    reopened = open_memory(tmp_path / "mem.db", embedder=VariantEmbedder())
    back = reopened.get(survivor.id)
    assert [e["id"] for e in back.metadata["merged"]] == [second.id, third.id, fourth.id]
    assert [e["tags"] for e in back.metadata["merged"]] == [["x"], ["x"], []]


def test_a_survivor_absorbs_the_history_of_an_earlier_survivor(open_memory) -> None:
    mem = hashed(open_memory)
    a, b = copies(mem, 2)
    consolidate(mem, threshold=0.99)
    # A copy recalled more often arrives: the old survivor is folded in, with its history.
    c = restored(mem, [{"recall_count": 3}])[0]
    result = consolidate(mem)
    assert result.merged == 1
    merged = mem.get(c.id).metadata["merged"]
    assert [e["id"] for e in merged] == [b.id, a.id]
    assert all(set(e) >= {"id", "created_at", "tags", "similarity", "merged_at"} for e in merged)


# --- what is never merged ------------------------------------------------------------------------


def test_summaries_encrypted_and_other_sources_are_not_merged(open_memory) -> None:
    mem = hashed(open_memory, settings=Settings(encryption_key=base64.b64encode(b"k" * 32).decode()))
    plain = mem.store(variant(0))
    summary = mem.store(variant(1), source={"type": "summary", "url": "file:///a.md"})
    summary2 = mem.store(variant(2), source={"type": "summary", "url": "file:///b.md"})
    a0 = mem.store(variant(3), source={"type": "file", "url": "/docs/a.md", "chunk": 0})
    b0 = mem.store(variant(4), source={"type": "file", "url": "/docs/b.md", "chunk": 0})
    web = mem.store(variant(5), source={"type": "web", "url": "/docs/a.md", "chunk": 0})
    a3 = mem.store(variant(6), source={"type": "file", "url": "/docs/a.md", "chunk": 3})
    secret = mem.store(variant(7), encrypted=True)

    result = consolidate(mem)

    assert result.scanned == 5  # the summaries and the encrypted one are not compared
    assert (result.clusters, result.merged) == (1, 1)  # two chunks of one document
    assert not alive(mem, a3.id)
    assert [e["id"] for e in mem.get(a0.id).metadata["merged"]] == [a3.id]
    for x in (plain, summary, summary2, b0, web):
        assert mem.get(x.id) == x
    assert alive(mem, secret.id)


def test_namespaces_are_consolidated_one_at_a_time(open_memory) -> None:
    mem = hashed(open_memory)
    here = [mem.store(variant(i), namespace="here") for i in (1, 2)]
    there = [mem.store(variant(i), namespace="there") for i in (1, 2)]
    assert consolidate(mem, namespace="here").merged == 1
    with pytest.raises(NotFoundError):
        mem.get(here[1].id, namespace="here")
    assert [mem.get(x.id, namespace="there") for x in there] == there


# --- the threshold -------------------------------------------------------------------------------


def pair_at(similarity: float, dim: int = 384) -> dict[str, np.ndarray]:
    e1, e2 = np.eye(dim, dtype=np.float32)[:2]
    return {"alpha bravo": e1, "alpha bravo charlie": similarity * e1 + np.sqrt(1 - similarity**2) * e2}


def test_threshold_is_respected(open_memory) -> None:
    mem = open_memory(embedder=FixedEmbedder(pair_at(0.9)))
    a, b = mem.store("alpha bravo", importance=0.7), mem.store("alpha bravo charlie")
    assert consolidate(mem, threshold=0.95).merged == 0
    assert consolidate(mem).merged == 0  # the default, 0.95
    result = consolidate(mem, threshold=0.85)
    assert (result.merged, result.threshold) == (1, 0.85)
    assert alive(mem, a.id) and not alive(mem, b.id)
    assert mem.get(a.id).metadata["merged"][0]["similarity"] == pytest.approx(0.9, abs=1e-4)


def test_the_default_threshold_is_the_setting(open_memory) -> None:
    embedder = FixedEmbedder(pair_at(0.9))
    mem = open_memory(embedder=embedder, settings=Settings(dedup_threshold=0.85))
    mem.store("alpha bravo"), mem.store("alpha bravo charlie")
    result = consolidate(mem)
    assert (result.threshold, result.merged) == (0.85, 1)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, True, "0.9"])
def test_a_threshold_outside_0_1_is_refused(open_memory, bad) -> None:
    mem = hashed(open_memory)
    with pytest.raises(ValidationError):
        consolidate(mem, threshold=bad)


def test_an_empty_namespace_merges_nothing(open_memory) -> None:
    result = consolidate(hashed(open_memory), namespace="nothing-here")
    assert (result.scanned, result.clusters, result.merged) == (0, 0, 0)


# --- the neighbour search (plain numpy, no database) ---------------------------------------------


def brute_force(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    a, b = np.nonzero(np.triu(x @ x.T >= threshold - 1e-6, 1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_partitioned_search_finds_planted_near_duplicates() -> None:
    rng = np.random.default_rng(7)
    base = unit(rng.standard_normal((3_000, 64)))
    picked = rng.choice(len(base), 100, replace=False)
    near = unit(base[picked] + 0.05 * unit(rng.standard_normal((100, 64))))  # cosine ~0.999
    x = np.vstack([base, near, base[:40]])  # and 40 exact copies
    planted = {(int(i), 3_000 + j) for j, i in enumerate(picked)} | {(i, 3_100 + i) for i in range(40)}

    a, b = near_pairs(x, 0.95, cell=64)  # 49 cells: the k-means path
    found = set(zip(a.tolist(), b.tolist(), strict=True))

    assert planted <= found
    assert found == brute_force(x, 0.95)  # and nothing below the threshold


def test_a_large_group_of_copies_is_one_cluster() -> None:
    rng = np.random.default_rng(3)
    copy = unit(rng.standard_normal((1, 32)))
    x = np.vstack([unit(rng.standard_normal((500, 32))), np.repeat(copy, 200, axis=0)])
    a, b = near_pairs(x, 0.99, cell=64)
    groups = components(len(x), a, b)
    assert [sorted(g.tolist()) for g in groups] == [list(range(500, 700))]


def test_exact_search_below_the_partition_size_matches_brute_force() -> None:
    x = unit(np.random.default_rng(1).standard_normal((300, 8)))
    a, b = near_pairs(x, 0.9)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == brute_force(x, 0.9)
    assert len(a) > 0
