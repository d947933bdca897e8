"""Recall with the real model embedding each query, alone and beside a CPU-busy process; store()
one at a time with embedding; batch embedding for ingestion; the command line from a cold start.

    python -m benchmarks.bench_query                  # 100k memories, a few minutes
    python -m benchmarks.bench_query --size 20000 --queries 100

The memories are bench_core's synthetic corpus with its synthetic vectors, stored under the
real model's name, so that the real all-MiniLM-L6-v2 opens the database and embeds every query:
the search costs what it costs at this size, and the query embedding what it costs for real
(distinct queries, so the query cache never answers). "Busy" runs one process that spins on a
core for the whole measurement, as another job on a shared 2-core machine would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_core import Corpus, SyntheticEmbedder, load, percentiles_ms
from stellar_core import SentenceTransformerEmbedder, StellarMemory, SteppingClock
from stellar_core.embeddings import DEFAULT_MODEL

TARGETS = {  # (label, comparison, threshold)
    "busy_p50": ("recall p50 incl. embedding, beside a busy process (ms)", "<=", 15.0),
    "busy_p95": ("recall p95 incl. embedding, beside a busy process (ms)", "<=", 30.0),
    "store_rate": ("store() one at a time incl. embedding (memories/s)", ">=", 54.0),
}


class UnderRealName(SyntheticEmbedder):
    """Synthetic vectors filed under the real model's name: the real model can open the store."""

    @property
    def model(self) -> str:
        return DEFAULT_MODEL


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on a core while the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def latencies(fn: Callable[[str], object], texts: Sequence[str]) -> list[float]:
    out = []
    for text in texts:
        started = time.perf_counter()
        fn(text)
        out.append(time.perf_counter() - started)
    return out


def cold(argv: list[str]) -> float:
    """Seconds for a fresh `stellar` process to answer."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stellar_core.cli", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=100_000, help="memories in the store")
    ap.add_argument("--queries", type=int, default=200, help="distinct queries per measurement")
    args = ap.parse_args(argv)
    corpus = Corpus()
    items, vectors = corpus.memories(args.size, "q")
    queries, _ = corpus.queries(2 * args.queries + 20)
    fresh, _ = corpus.memories(2_600, "s")  # texts for store() and batch embedding
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stellar-bench-query-") as tmp:
        db = Path(tmp) / "bench.db"
        print(f"loading {args.size:,} memories ...", file=sys.stderr, flush=True)
        synthetic = UnderRealName([x["content"] for x in items], vectors)
        with StellarMemory(db, embedder=synthetic, background=False) as mem:
            load(mem, items, SteppingClock(), 0.0)
        embedder = SentenceTransformerEmbedder()
        started = time.perf_counter()
        embedder.embed(["load the model"])
        figures["model_load_s"] = time.perf_counter() - started
        with StellarMemory(db, embedder=embedder, background=False) as mem:
            mem.warm()
            latencies(mem.recall, queries[:20])  # warm-up
            idle = latencies(mem.recall, queries[20 : 20 + args.queries])
            with busy_core():
                busy = latencies(mem.recall, queries[20 + args.queries :])
            figures["idle_p50"], figures["idle_p95"], _ = percentiles_ms(idle)
            figures["busy_p50"], figures["busy_p95"], _ = percentiles_ms(busy)
            stores = latencies(
                lambda t: mem.store(t, namespace="single"), [x["content"] for x in fresh[:300]]
            )
            figures["store_rate"] = len(stores) / sum(stores)
            figures["store_p50"] = percentiles_ms(stores)[0]
            batch = [x["content"] for x in fresh[300:]]
            started = time.perf_counter()
            embedder.embed(batch)
            figures["batch_rate"] = len(batch) / (time.perf_counter() - started)
        figures["cold_recall_s"] = cold(["--db", str(db), "recall", queries[-1]])
        figures["cold_stats_s"] = cold(["--db", str(db), "stats"])

    f = figures
    rows = [
        ("recall p50 / p95 incl. embedding, idle (ms)", f"{f['idle_p50']:.1f} / {f['idle_p95']:.1f}"),
        ("recall p50 / p95 incl. embedding, busy (ms)", f"{f['busy_p50']:.1f} / {f['busy_p95']:.1f}"),
        (
            "store() one at a time incl. embedding (/s)",
            f"{f['store_rate']:.0f} (p50 {f['store_p50']:.1f} ms)",
        ),
        (f"batch embedding of {len(fresh) - 300:,} texts (/s)", f"{f['batch_rate']:.0f}"),
        ("model load in this process (s)", f"{f['model_load_s']:.2f}"),
        ("`stellar recall` from a cold start (s)", f"{f['cold_recall_s']:.2f}"),
        ("`stellar stats` from a cold start (s)", f"{f['cold_stats_s']:.2f}"),
    ]
    print(f"\nStellar Memory query benchmark: {args.size:,} memories (SQLite), real model {DEFAULT_MODEL}")
    print(
        f"({os.cpu_count()} CPUs; {args.queries} distinct queries each; busy: one process spinning on a core)"
    )
    for label, value in rows:
        print(f"  {label:<48}{value}")
    print()
    for key, (label, op, limit) in TARGETS.items():
        value = figures[key]
        ok = value <= limit if op == "<=" else value >= limit
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.1f} (target {op} {limit:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
