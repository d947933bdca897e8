"""VectorIndex: exact search, masking, replacement, thread neighbours and the HNSW graph."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from stellar_core import Settings
from stellar_core.store.vector_index import VectorIndex
from tests.fakes import HashEmbedder

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled(n: int, min_rows: int = 100_000, seed: int = 7) -> tuple[VectorIndex, np.ndarray, list[int]]:
    """An index of ``n`` random unit rows with seqs 1000, 1001, ... (no graph unless asked)."""
    vecs = unit(np.random.default_rng(seed), n)
    seqs = list(range(1000, 1000 + n))
    index = VectorIndex(DIM, min_rows)
    index.upsert(seqs, vecs, [None] * n)
    return index, vecs, seqs


def true_top(vecs: np.ndarray, seqs: list[int], query: np.ndarray, n: int) -> list[int]:
    order = np.argsort(-(vecs @ query), kind="stable")[:n]
    return [seqs[i] for i in order]


def ids(hits: list[tuple[int, float]]) -> list[int]:
    return [seq for seq, _ in hits]


# --- exact search --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 50])
def test_exact_search_returns_the_true_top_in_order(n):
    index, vecs, seqs = filled(300)
    for query in unit(np.random.default_rng(1), 5):
        hits = index.search(query, n)
        assert ids(hits) == true_top(vecs, seqs, query, n)
        sims = [s for _, s in hits]
        assert sims == sorted(sims, reverse=True)
        assert sims[0] == pytest.approx(float(np.max(vecs @ query)), abs=1e-5)


def test_search_of_a_stored_vector_finds_itself():
    index, vecs, seqs = filled(200)
    (seq, sim), *_ = index.search(vecs[42], 3)
    assert seq == seqs[42]
    assert sim == pytest.approx(1.0, abs=1e-5)


def test_search_asks_for_more_than_there_is():
    index, _, seqs = filled(7)
    assert sorted(ids(index.search(unit(np.random.default_rng(2), 1)[0], 50))) == seqs
    assert VectorIndex(DIM, 10).search(unit(np.random.default_rng(3), 1)[0], 5) == []


def test_allowed_restricts_the_search():
    index, vecs, seqs = filled(300)
    query = unit(np.random.default_rng(4), 1)[0]
    allowed = set(seqs[::3])
    hits = index.search(query, 10, allowed=allowed | {-1, 999_999})  # unknown seqs are ignored
    keep = [i for i, s in enumerate(seqs) if s in allowed]
    assert ids(hits) == true_top(vecs[keep], [seqs[i] for i in keep], query, 10)
    assert index.search(query, 10, allowed=set()) == []


def test_remove_masks_rows():
    index, vecs, seqs = filled(100)
    gone = seqs[:10]
    index.remove([*gone, 123_456])  # unknown seqs are ignored
    assert len(index) == 90
    for i in range(10):
        assert seqs[i] not in ids(index.search(vecs[i], 100))
    assert index.similarities(vecs[0], gone) == {}
    assert set(index.all_similarities(vecs[0])) == set(seqs[10:])
    alive = list(range(10, 100))
    query = vecs[0]
    assert ids(index.search(query, 5)) == true_top(vecs[alive], seqs[10:], query, 5)


def test_upsert_replaces_a_row():
    index, vecs, seqs = filled(100)
    fresh = unit(np.random.default_rng(5), 1)
    index.upsert([seqs[3]], fresh, [None])
    assert len(index) == 100
    (seq, sim), *_ = index.search(fresh[0], 1)
    assert (seq, sim) == (seqs[3], pytest.approx(1.0, abs=1e-5))
    assert index.similarities(vecs[3], [seqs[3]])[seqs[3]] == pytest.approx(
        float(vecs[3] @ fresh[0]), abs=1e-5
    )
    assert ids(index.search(vecs[3], 1)) != [seqs[3]]


def test_upsert_grows_past_the_initial_capacity():
    index, vecs, seqs = filled(3000)
    assert len(index) == 3000
    assert ids(index.search(vecs[2999], 1)) == [seqs[2999]]


def test_around_finds_thread_neighbours_by_position():
    index = VectorIndex(DIM, 100)
    vecs = unit(np.random.default_rng(6), 8)
    places = [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("t", 4), ("u", 2), None, ("t", 6)]
    index.upsert(list(range(1, 9)), vecs, places)

    def around(seqs: list[int], reach: int) -> list[int]:
        return sorted(s for s, *_ in index.around(vecs[0], seqs, reach))

    assert around([3], 1) == [2, 3, 4]  # ("t", 2): positions 1 to 3
    assert around([3], 2) == [1, 2, 3, 4, 5]
    assert around([1], 1) == [1, 2]  # first in its thread
    assert around([6], 2) == [6]  # alone in thread "u"
    assert around([7], 1) == []  # no thread
    assert around([5], 2) == [3, 4, 5, 8]  # a gap at position 5
    assert around([1, 6], 1) == [1, 2, 6]
    got = {s: (t, p, c) for s, t, p, c in index.around(vecs[0], [3], 1)}
    assert got[2][:2] == ("t", 1) and got[2][2] == pytest.approx(float(vecs[1] @ vecs[0]), abs=1e-5)
    index.remove([4])
    assert around([3], 1) == [2, 3]
    index.upsert([4], vecs[3:4], [("t", 3)])
    assert around([3], 1) == [2, 3, 4]


# --- the HNSW graph --------------------------------------------------------------------------


def test_upkeep_builds_no_graph_below_the_minimum():
    index, _, _ = filled(99, min_rows=100)
    index.upkeep()
    assert not index.has_graph


def test_graph_search_finds_stored_vectors_and_new_rows():
    index, vecs, seqs = filled(500, min_rows=100)
    assert not index.has_graph
    index.upkeep()
    assert index.has_graph
    for i in range(0, 500, 25):
        (seq, sim), *_ = index.search(vecs[i], 5)
        assert seq == seqs[i]
        assert sim == pytest.approx(1.0, abs=1e-5)

    late = unit(np.random.default_rng(8), 20)  # added after the build: searched exactly
    late_seqs = list(range(5000, 5020))
    index.upsert(late_seqs, late, [None] * 20)
    for seq, vec in zip(late_seqs, late, strict=True):
        assert ids(index.search(vec, 1)) == [seq]
    index.upkeep()  # now in the graph, still found
    for seq, vec in zip(late_seqs, late, strict=True):
        assert ids(index.search(vec, 1)) == [seq]


def test_graph_never_returns_removed_rows():
    index, vecs, seqs = filled(500, min_rows=100)
    index.upkeep()
    gone = set(seqs[::10])  # 50 rows: below the rebuild threshold of 100
    index.remove(gone)
    index.upkeep()
    for i in range(0, 500, 10):
        assert not gone & set(ids(index.search(vecs[i], 20)))
    replaced = unit(np.random.default_rng(9), 1)
    index.upsert([seqs[1]], replaced, [None])
    assert seqs[1] not in ids(index.search(vecs[1], 20))
    assert ids(index.search(replaced[0], 1)) == [seqs[1]]
    assert len(index) == 450


def test_graph_search_returns_n_hits_when_the_nearest_rows_were_removed():
    index, vecs, seqs = filled(500, min_rows=100)
    index.upkeep()
    query = vecs[0]
    order = np.argsort(-(vecs @ query))
    index.remove([seqs[i] for i in order[:90]])  # below the rebuild threshold of 100
    index.upkeep()
    alive = order[90:]
    hits = index.search(query, 10)
    assert ids(hits) == true_top(vecs[alive], [seqs[i] for i in alive], query, 10)


def test_many_removals_rebuild_the_graph():
    index, vecs, seqs = filled(500, min_rows=100)
    index.upkeep()
    gone = set(seqs[:150])  # more than a fifth of the graph
    index.remove(gone)
    index.upkeep()
    assert index.has_graph
    assert len(index) == 350
    assert index._n == 350  # compacted: the dead rows are gone, not masked
    for i in range(150, 500, 10):
        assert ids(index.search(vecs[i], 1)) == [seqs[i]]
    for i in range(0, 150, 10):
        assert not gone & set(ids(index.search(vecs[i], 20)))


def test_rebuild_keeps_changes_made_while_the_graph_is_built(monkeypatch):
    index, vecs, seqs = filled(500, min_rows=100)
    index.upkeep()
    index.remove(seqs[:120])
    rng = np.random.default_rng(10)
    new, replaced = unit(rng, 5), unit(rng, 2)
    new_seqs = list(range(9000, 9005))
    real_graph = faiss.IndexHNSWFlat

    class InterleavedGraph(real_graph):
        """Applies writes while the rebuild adds vectors, i.e. without holding the lock."""

        interleaved = False

        def add(self, x):  # type: ignore[no-untyped-def]
            if not InterleavedGraph.interleaved:  # only during the rebuild's own add
                InterleavedGraph.interleaved = True
                index.upsert(new_seqs, new, [("t", 0), ("t", 1), None, None, None])
                index.upsert([seqs[200], seqs[201]], replaced, [None, None])  # replace live rows
                index.remove([seqs[300], new_seqs[4]])  # a snapshot row and a brand-new row
            super().add(x)

    monkeypatch.setattr(faiss, "IndexHNSWFlat", InterleavedGraph)
    index.upkeep()  # rebuild: more than a fifth is dead
    monkeypatch.undo()

    assert InterleavedGraph.interleaved
    assert isinstance(index._hnsw, InterleavedGraph)
    assert len(index) == 500 - 120 + 5 - 2
    for seq, vec in zip(new_seqs[:4], new[:4], strict=True):
        assert ids(index.search(vec, 1)) == [seq]
    for seq, vec in zip([seqs[200], seqs[201]], replaced, strict=True):
        assert ids(index.search(vec, 1)) == [seq]
    gone = {*seqs[:120], seqs[300], new_seqs[4]}
    for vec in (*vecs[:120:10], vecs[200], vecs[201], vecs[300], new[4]):
        found = ids(index.search(vec, 20))
        assert not gone & set(found)
        assert seqs[200] not in found[:1] and seqs[201] not in found[:1]
    assert sorted(s for s, *_ in index.around(new[0], [9000], 1)) == [9000, 9001]
    index.upkeep()  # the rows added meanwhile join the graph
    for seq, vec in zip(new_seqs[:4], new[:4], strict=True):
        assert ids(index.search(vec, 1)) == [seq]


def test_concurrent_upkeep_calls_keep_every_row(monkeypatch):
    index, vecs, seqs = filled(500, min_rows=100)
    index.remove(seqs[::3])  # dead rows: a rebuild renumbers the live ones
    real_graph = faiss.IndexHNSWFlat

    class RacingGraph(real_graph):
        """Lets another thread run upkeep() while the first build adds its vectors."""

        raced = False
        other: threading.Thread

        def add(self, x):  # type: ignore[no-untyped-def]
            if not RacingGraph.raced:
                RacingGraph.raced = True
                RacingGraph.other = threading.Thread(target=index.upkeep)
                RacingGraph.other.start()
                RacingGraph.other.join(timeout=0.5)  # it must wait for this build, not race it
            super().add(x)

    monkeypatch.setattr(faiss, "IndexHNSWFlat", RacingGraph)
    index.upkeep()
    RacingGraph.other.join()
    monkeypatch.undo()

    assert RacingGraph.raced
    alive = [i for i in range(500) if i % 3]
    assert len(index) == len(alive)
    for i in alive[::10]:
        assert ids(index.search(vecs[i], 1)) == [seqs[i]]


# --- through StellarMemory ------------------------------------------------------------------


def test_memory_recalls_through_the_graph(open_memory, tmp_path):
    mem = open_memory(tmp_path / "graph.db", embedder=HashEmbedder(), settings=Settings(hnsw_min_rows=50))
    stored = mem.store_many([f"Entry {i}: lorem ipsum {i * 7}" for i in range(200)])
    mem.warm()
    index = mem.engine.vectors().get(mem.namespace)
    assert index.has_graph
    for x in stored[::20]:
        assert mem.recall(x.content, k=1)[0].memory.id == x.id

    late = mem.store("Stored after the graph was built")
    assert mem.recall(late.content, k=1)[0].memory.id == late.id
    mem.forget(stored[0].id)
    assert stored[0].id not in [h.memory.id for h in mem.recall(stored[0].content, k=5)]
