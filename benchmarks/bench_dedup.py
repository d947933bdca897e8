"""Near-duplicate consolidation: how long ``consolidate`` takes on a large namespace, and what it finds.

Run from the repository root (100k memories: a few minutes, most of it the load)::

    python -m benchmarks.bench_dedup                     # 100,000 memories on SQLite
    python -m benchmarks.bench_dedup --size 20000
    python -m benchmarks.bench_dedup --backend postgres --size 100000

The namespace holds ``bench_core``'s synthetic corpus (embedding excluded: precomputed vectors),
every memory standalone (dedup leaves memories in threads alone), plus planted
near-duplicates, ~1% of it: copies of random memories with a word added and the vector turned
by a random angle (cosine 0.96-0.995 to the original, above the default threshold of 0.95;
some memories get two copies). The original corpus has no pairs that
close, so every merge is either a planted one or a false one, and both are counted.
Printed: consolidation time (wall and CPU) split into neighbour search and merging, clusters
and memories merged, how many planted groups ended as one memory, and a second run (which
must merge nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import SEED, Corpus, SyntheticEmbedder, database, load, rss_mb, timed, totals
from stellar_core import StellarMemory, SteppingClock
from stellar_core.dedup import consolidate
from stellar_core.store.records import live, m

COSINE = (0.96, 0.995)  # planted copies' similarity to their original


def plant(
    items: list[dict[str, Any]], vectors: np.ndarray, copies: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], np.ndarray, list[list[str]]]:
    """Items and vectors with ``copies`` near-duplicates appended, and the planted groups
    (the original's text, then its copies')."""
    sources = rng.choice(len(items), copies, replace=True)  # a source drawn twice: two copies
    groups: dict[int, list[str]] = {}
    extra_items, extra_vectors = [], []
    for s in sources.tolist():
        group = groups.setdefault(s, [items[s]["content"]])
        text = f"{items[s]['content'][:-1]} again{'' if len(group) == 1 else f' x{len(group)}'}."
        group.append(text)
        extra_items.append({"content": text, "importance": items[s]["importance"], "tags": items[s]["tags"]})
        v = vectors[s]
        u = rng.standard_normal(v.shape).astype(np.float32)
        u -= (u @ v) * v  # orthogonal to the original: the cosine is exactly c
        c = rng.uniform(*COSINE)
        extra_vectors.append(c * v + np.sqrt(1 - c * c) * u / np.linalg.norm(u))
    return (
        items + extra_items,
        np.vstack([vectors, np.array(extra_vectors, dtype=np.float32)]),
        list(groups.values()),
    )


def live_contents(mem: StellarMemory) -> list[str]:
    with mem.engine.db.read() as conn:
        return list(conn.execute(sa.select(m.content).where(live(mem.namespace))).scalars())


def run(size: int, rate: float, backend: str, threshold: float | None, seed: int) -> None:
    copies = max(1, round(size * rate))
    corpus = Corpus(seed)
    items, vectors = corpus.memories(size - copies, "d")
    for item in items:  # all standalone: dedup leaves conversation turns and document chunks be
        item.pop("thread", None)
    items, vectors, groups = plant(items, vectors, copies, np.random.default_rng(seed))
    embedder = SyntheticEmbedder([x["content"] for x in items], vectors)
    del vectors
    clock = SteppingClock()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp, database(backend, Path(tmp)) as db:
        mem = StellarMemory(db, embedder=embedder, clock=clock, background=False)
        try:
            print(f"loading {len(items):,} memories ({copies:,} planted copies in {len(groups):,} groups)")
            loaded = totals(load(mem, items, clock, 30.0))
            print(f"  loaded in {loaded.wall:.1f} s")
            before = live_contents(mem)
            (wall, cpu), result = timed(lambda: consolidate(mem, threshold=threshold))
            after = set(live_contents(mem))
            (wall2, cpu2), again = timed(lambda: consolidate(mem, threshold=threshold))
        finally:
            mem.close()

    whole = sum(1 for g in groups if sum(t in after for t in g) == 1)
    in_groups = sum(len(g) - sum(t in after for t in g) for g in groups)
    print()
    print(f"consolidate on {'embedded SQLite' if backend == 'sqlite' else 'PostgreSQL + pgvector'}")
    print(f"  memories        {len(before):,} (scanned {result.scanned:,}), threshold {result.threshold}")
    print(f"  clusters        {result.clusters:,}")
    print(f"  merged          {result.merged:,}")
    print(f"  planted groups  {whole:,} of {len(groups):,} now one memory")
    print(f"  false merges    {result.merged - in_groups:,} (memories merged outside a planted group)")
    print(f"  seconds         {wall:.2f} wall, {cpu:.2f} CPU")
    print(f"    search        {result.search_seconds:.2f} (read vectors, partition, compare)")
    print(f"    merge         {result.merge_seconds:.2f} ({result.clusters:,} transactions)")
    print(f"  second run      {again.merged:,} merged, {wall2:.2f} s wall, {cpu2:.2f} s CPU")
    print(f"  peak RSS        {rss_mb()[1]:,.0f} MB")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=100_000, help="memories in the namespace, copies included")
    ap.add_argument("--rate", type=float, default=0.01, help="share of planted near-duplicate copies")
    ap.add_argument(
        "--threshold", type=float, help="cosine similarity (default: the dedup_threshold setting)"
    )
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    run(args.size, args.rate, args.backend, args.threshold, args.seed)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
