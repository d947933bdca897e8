"""Throughput with several client processes sharing one PostgreSQL memory (and Redis cache).

Each client is its own process with its own StellarMemory, as separate agents would be; they
all work on one namespace for ``--seconds``: a mix of store (30%), recall (50%) and get
(20%), synthetic vectors (embedding excluded). Prints operations per second per kind::

    python -m benchmarks.bench_clients                     # 1 and 8 clients, 5,000 memories first
    python -m benchmarks.bench_clients --clients 1 4 8 --seconds 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import Corpus, SyntheticEmbedder
from stellar_core import Settings, StellarMemory
from tests.services import Postgres, Redis

PRELOAD = 5_000


def _embedder(seed: int) -> tuple[SyntheticEmbedder, list[dict], list[str]]:
    corpus = Corpus(seed)
    items, vectors = corpus.memories(PRELOAD + 20_000, "c")
    queries, qvectors = corpus.queries(500)
    texts = [x["content"] for x in items] + queries
    return SyntheticEmbedder(texts, np.vstack([vectors, qvectors])), items, queries


def client(url: str, redis_url: str, worker: int, seconds: float, ids: list[str]) -> Counter[str]:
    embedder, items, queries = _embedder(1)
    rng = random.Random(worker)
    own = items[PRELOAD + worker * 2_000 : PRELOAD + (worker + 1) * 2_000]
    done: Counter[str] = Counter()
    settings = Settings(redis_url=redis_url)
    with StellarMemory(url, embedder=embedder, settings=settings, agent=f"client-{worker}") as mem:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            roll = rng.random()
            if roll < 0.3 and own:
                mem.store(**own.pop())
                done["store"] += 1
            elif roll < 0.8:
                mem.recall(rng.choice(queries), k=10)
                done["recall"] += 1
            else:
                mem.get(rng.choice(ids))
                done["get"] += 1
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args(argv)
    embedder, items, _ = _embedder(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stellar-bench-clients-") as tmp:
        pg, redis = Postgres(Path(tmp) / "pg"), Redis(Path(tmp) / "redis")
        pg.start()
        redis.start()
        try:
            for n in args.clients:
                url = pg.create_database(f"clients_{n}")
                with StellarMemory(url, embedder=embedder, background=False) as mem:
                    batches = (items[b : b + 1_000] for b in range(0, PRELOAD, 1_000))
                    ids = [x.id for batch in batches for x in mem.store_many(batch)]
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(n) as pool:
                    jobs = [(url, redis.url(), w, args.seconds, ids) for w in range(n)]
                    total = sum(pool.starmap(client, jobs, chunksize=1), Counter())
                rows.append((n, total))
        finally:
            redis.stop()
            pg.stop("immediate")
    print(f"\nPostgreSQL 18 + Redis, one namespace of {PRELOAD:,}+ memories, {args.seconds:.0f} s per run")
    print(f"{'clients':>8} {'ops/s':>9} {'store/s':>9} {'recall/s':>9} {'get/s':>9}")
    for n, total in rows:
        per = {k: v / args.seconds for k, v in total.items()}
        print(
            f"{n:>8} {sum(per.values()):>9,.0f} {per.get('store', 0):>9,.0f} "
            f"{per.get('recall', 0):>9,.0f} {per.get('get', 0):>9,.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
