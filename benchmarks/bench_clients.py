"""Throughput with several client processes sharing one PostgreSQL memory (and Redis cache).

Each client is its own process with its own StellarMemory, as separate agents would be; they
all work on one namespace for ``--seconds``: a mix of store (30%), recall (50%) and get
(20%), synthetic vectors (embedding excluded). Runs follow each other on the same memory, so
a later run also finds the earlier runs' stores. Prints operations per second per kind::

    python -m benchmarks.bench_clients                     # 1 and 8 clients, 5,000 memories first
    python -m benchmarks.bench_clients --clients 1 4 8 --seconds 20
    python -m benchmarks.bench_clients --preload 1000000   # at 1M memories (load: minutes)
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

from benchmarks.bench_core import SERVER_SETTINGS, Corpus, SyntheticEmbedder
from stellar_core import Settings, StellarMemory
from tests.services import Postgres, Redis

PRELOAD = 5_000
OWN = 2_000  # memories each client may store


def _embedder(
    items: list[dict], vectors: np.ndarray, queries: list[str], qv: np.ndarray
) -> SyntheticEmbedder:
    return SyntheticEmbedder([x["content"] for x in items] + queries, np.vstack([vectors, qv]))


def client(url: str, redis_url: str, worker: int, seconds: float, ids: list[str]) -> Counter[str]:
    own, vectors = Corpus(1_000 + worker).memories(OWN, f"client{worker}")
    queries, qv = Corpus(1).queries(500)
    embedder = _embedder(own, vectors, queries, qv)
    rng = random.Random(worker)
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
    ap.add_argument("--preload", type=int, default=PRELOAD, help="memories stored before the clients start")
    args = ap.parse_args(argv)
    items, vectors = Corpus(1).memories(args.preload, "c")
    queries, qv = Corpus(1).queries(500)
    embedder = _embedder(items, vectors, queries, qv)
    del vectors
    rows = []
    with tempfile.TemporaryDirectory(prefix="stellar-bench-clients-") as tmp:
        pg, redis = Postgres(Path(tmp) / "pg", **SERVER_SETTINGS), Redis(Path(tmp) / "redis")
        pg.start()
        redis.start()
        try:
            url = pg.create_database("clients")
            with StellarMemory(url, embedder=embedder, background=False) as mem:
                batches = (items[b : b + 1_000] for b in range(0, len(items), 1_000))
                ids = [x.id for batch in batches for x in mem.store_many(batch)]
                mem.warm()  # the HNSW graph built, as a long-running deployment has it
            sample = random.Random(0).sample(ids, min(len(ids), 5_000))
            for n in args.clients:
                with multiprocessing.get_context("spawn").Pool(n) as pool:
                    jobs = [(url, redis.url(), w, args.seconds, sample) for w in range(n)]
                    total = sum(pool.starmap(client, jobs, chunksize=1), Counter())
                rows.append((n, total))
        finally:
            redis.stop()
            pg.stop("immediate")
    print(
        f"\nPostgreSQL 18 + Redis, one namespace of {args.preload:,}+ memories, {args.seconds:.0f} s per run"
    )
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
