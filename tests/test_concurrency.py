"""Several processes storing, recalling and reorbiting one namespace at once, on each backend:
nothing stored is lost, no recall is left uncounted, nobody deadlocks."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest

from stellar_core import StellarMemory, SystemClock
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.backends

WORKERS, STORES, RECALLS = 4, 40, 15
HOT = [f"shared fact number {i} about the relay antenna" for i in range(10)]


def _work(url: str, worker: int) -> Counter[str]:
    """Store, recall and (worker 0) reorbit; returns how often each memory was recalled."""
    seen: Counter[str] = Counter()
    with StellarMemory(url, embedder=HashEmbedder(), background=False, agent=f"agent-{worker}") as mem:
        for i in range(STORES):
            mem.store(f"worker {worker} note {i}", thread=f"w{worker}")
            if i % 3 == 0:
                for hit in mem.recall("shared fact relay antenna", k=5):
                    seen[hit.memory.id] += 1
            if worker == 0 and i % 10 == 0:
                mem.reorbit()
        for _ in range(RECALLS):
            for hit in mem.recall("shared fact relay antenna", k=5):
                seen[hit.memory.id] += 1
    return seen  # closing flushed this worker's recall statistics


def test_processes_share_a_namespace_without_losing_updates(open_memory, tmp_path) -> None:
    # Real time in every process: a stepping clock here would make the workers' reorbit see
    # these memories as decades idle.
    mem = open_memory(tmp_path / "shared.db", embedder=HashEmbedder(), clock=SystemClock())
    hot = {x.id for x in mem.store_many(HOT)}
    url = str(mem.engine.db.url.render_as_string(hide_password=False))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        counts = pool.starmap(_work, [(url, w) for w in range(WORKERS)], chunksize=1)
    total: Counter[str] = sum(counts, Counter())
    assert mem.stats().memories == len(HOT) + WORKERS * STORES
    for w in range(WORKERS):
        assert len(mem.thread(f"w{w}")) == STORES
    assert set(total) <= hot | {x.id for w in range(WORKERS) for x in mem.thread(f"w{w}")}
    for memory_id, n in total.items():
        assert mem.get(memory_id).recall_count == n, "a recall count was lost"
