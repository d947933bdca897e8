"""Sync between replicas: replication lag, events applied per second, catch-up time.

Starts a throwaway redis-server (append-only file, fsync every second: how the Redis that
carries the streams is configured) and SQLite replicas in a temporary directory, each
replica its own database. Embedding is excluded (a synthetic embedder hands out precomputed
vectors, and events carry the vectors) except where re-embedding is the point::

    python -m benchmarks.bench_sync                      # 10 agents x 50/s for 10 s, 20k, 100k
    python -m benchmarks.bench_sync --quick              # smoke run: 3 agents x 2 s, 2k, 5k
    python -m benchmarks.bench_sync --phases lag --writers publish   # lag only, writers publish only
    python -m benchmarks.bench_sync --phases lag --rate 5            # a lighter load: 10 x 5 stores/s
    python -m benchmarks.bench_sync --phases catchup --catchup 100000 --max-seconds 0   # no time limit

What is measured:

1. Replication lag: ``--agents`` writer processes (each its own replica, syncing in the
   background: publishing and applying the others' changes, unless ``--writers publish``)
   store ``--rate`` memories a second each for ``--seconds``, on an open-loop schedule; an
   observer replica in another process applies them with its background thread. The lag of
   a memory runs from the return of ``store`` on its writer (committed) to the commit of the
   observer's transaction that applied it (visible to every reader there: the observer
   checks each one with ``get`` afterwards). Split at the moment Redis took the event (the
   entry id's time): commit -> in the stream (publishing), in the stream -> visible (applying).
   Every replica runs on this machine: the agents' own stores, and (``follow``) their applying
   of each other's changes, share its cores with the observer. An agent still writing
   ``max(10 s, --seconds)`` after its schedule's end stops; the stores it left out are reported.
2. Events applied per second by one replica: ``--apply`` store events published by one
   replica, then a fresh replica's ``pull(batch=500)`` loop is timed until all are applied.
   With the vectors in the events (``sync_vectors``, the default: the receiver embeds
   nothing) and without them, the receiver re-embedding each content with the real model
   (all-MiniLM-L6-v2, ``--real`` events). Also ``--apply`` recall-count events (a replica's
   recall statistics of memories the receiver already holds).
3. Catch-up: a replica joins, goes offline while ``--catchup`` changes are published, then,
   in a fresh process, pulls until its lag is 0; its peak RSS is reported.

Pull loops stop after ``--max-seconds`` (0: no limit); a figure cut short says so and gives
the time the whole count would take at the rate measured.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import SEED, Corpus, SyntheticEmbedder, in_child, rss_mb
from stellar_core import (
    Applied,
    Embedder,
    NotFoundError,
    SentenceTransformerEmbedder,
    Settings,
    StellarMemory,
    Sync,
)
from stellar_core.store.schema import memories
from tests.services import Redis

BATCH = 1_000  # store_many batch of the publishing replicas
PULL_BATCH = 500  # events per apply transaction in the timed pull loops
LAG_TARGET_MS = 50.0
APPLY_TARGET = 5_000.0  # events/s
READY_SECONDS = 180.0  # for the lag phase's processes to start and see the seed event


# --- helpers --------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time of this process so far, all its threads."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def peak_rss_mb() -> float:
    """This process's peak RSS (``getrusage``), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def ranked_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) in ms; ``inf`` stands for never."""
    if not seconds:
        return math.nan
    ordered = sorted(seconds)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000


def fmt_ms(ms: float) -> str:
    if math.isnan(ms):
        return "-"
    if math.isinf(ms):
        return "never"
    return f"{ms:,.1f}" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def spread(seconds: Sequence[float]) -> str:
    """p50 / p95 / p99 / max."""
    return " / ".join(fmt_ms(ranked_ms(seconds, q)) for q in (50, 95, 99, 100))


def corpus_embedder(n: int, prefix: str, seed: int) -> tuple[list[dict[str, Any]], SyntheticEmbedder]:
    """``n`` store() mappings and an embedder that knows their vectors (embedding costs nothing)."""
    items, vectors = Corpus(seed).memories(n, prefix)
    return items, SyntheticEmbedder([x["content"] for x in items], vectors)


class TimedEmbedder:
    """An ``Embedder`` that counts the texts it embeds and the time it takes."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts = 0
        self.seconds = 0.0

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        t = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - t
        self.texts += len(texts)
        return out


def publish_all(mem: StellarMemory) -> int:
    """Publish the whole outbox, in the background publisher's steps; how many."""
    n = 0
    while k := mem.sync.publish():
        n += k
    return n


@dataclass
class PullLoop:
    """A timed ``pull`` loop."""

    applied: int = 0
    other: int = 0  # duplicates, waiting, refused
    pulls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    cut_short: bool = False


def pull_until(mem: StellarMemory, wanted: int | None, max_seconds: float) -> PullLoop:
    """Pull batches until ``wanted`` events are applied (None: until a pull finds nothing)
    or ``max_seconds`` pass (0: no limit)."""
    out = PullLoop()
    t0, c0 = time.perf_counter(), cpu_seconds()
    empty = 0
    while wanted is None or out.applied < wanted:
        if max_seconds and time.perf_counter() - t0 >= max_seconds:
            out.cut_short = True
            break
        done: Applied = mem.sync.pull(batch=PULL_BATCH)
        out.pulls += 1
        out.applied += done.applied
        out.other += done.duplicates + done.waiting + done.refused
        if done.applied + done.duplicates + done.waiting + done.refused == 0:
            empty += 1
            if wanted is None or empty >= 20:  # all there is (or it never comes)
                break
            time.sleep(0.05)
        else:
            empty = 0
    out.seconds = time.perf_counter() - t0
    out.cpu = cpu_seconds() - c0
    return out


def seed_stream(url: str, location: Path) -> str:
    """A replica stores and publishes one memory, so that the stream and its namespace exist
    before the measured replicas start (they look for streams every few seconds). Its id."""
    items, embedder = corpus_embedder(1, "seed", SEED - 1)
    with StellarMemory(
        location, agent="seed", settings=Settings(sync_url=url), embedder=embedder, background=False
    ) as mem:
        memory_id = mem.store_many(items)[0].id
        publish_all(mem)
    return memory_id


def wait_visible(mem: StellarMemory, memory_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            mem.get(memory_id)
            return
        except NotFoundError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"memory {memory_id} not replicated within {timeout:.0f} s") from None
            time.sleep(0.02)


# --- 1. replication lag ---------------------------------------------------------------------
class TimedSync(Sync):
    """``Sync`` that notes when each batch it applied was committed (``apply`` returns after
    the commit), how long applying it took, and the entries of the batch."""

    def __init__(self, mem: StellarMemory) -> None:
        super().__init__(mem.engine)
        self.log: list[tuple[float, float, list[tuple[str, bytes]]]] = []
        self.entries = 0

    def apply(self, ns: str, entries: Sequence[tuple[str, str, dict[bytes, bytes]]]) -> Applied:
        t = time.perf_counter()
        done = super().apply(ns, entries)
        took = time.perf_counter() - t
        self.log.append((time.time(), took, [(i, fields.get(b"e", b"")) for _, i, fields in entries]))
        self.entries += len(entries)
        return done


def observer_main(
    location: str, url: str, seed_id: str, out: Any, stop: Any, seen: Any, ready_timeout: float
) -> None:
    """The observing replica (a process): applies with the background thread and reports
    (memory id, visible at, in the stream at) for every store event it applied."""
    _, embedder = corpus_embedder(1, "observer", SEED - 2)
    mem = StellarMemory(
        location, agent="observer", settings=Settings(sync_url=url), embedder=embedder, background=False
    )
    timed = TimedSync(mem)
    mem.sync = timed  # before its threads start (what sync_background=True starts)
    timed.start()
    wait_visible(mem, seed_id, ready_timeout)
    out.put(("ready", "observer"))
    c0 = cpu_seconds()
    while not stop.wait(0.05):
        seen.value = timed.entries
    cpu = cpu_seconds() - c0
    timed.stop()
    first: dict[str, tuple[float, float]] = {}
    for at, _, batch in timed.log:
        for entry_id, body in batch:
            doc = json.loads(body)
            if doc.get("op") == "store":
                first.setdefault(doc["mid"], (at, int(entry_id.split("-", 1)[0]) / 1000))
    hidden = 0
    for memory_id in first:
        try:
            mem.get(memory_id)
        except NotFoundError:
            hidden += 1
    mem.close()
    arrivals = [(mid, at, streamed) for mid, (at, streamed) in first.items()]
    batches = [(took, len(batch)) for _, took, batch in timed.log]
    out.put(("observer", arrivals, hidden, cpu, batches))


def writer_main(
    k: int,
    location: str,
    url: str,
    seconds: float,
    rate: float,
    agents: int,
    follow: bool,
    seed_id: str,
    out: Any,
    go: Any,
    stop: Any,
    start_at: Any,
    ready_timeout: float,
) -> None:
    """One agent (a process): stores ``rate`` memories a second for ``seconds`` on its own
    replica, syncing in the background (or, not ``follow``, only publishing); reports
    (memory id, committed at, store seconds) of each."""
    n = max(1, round(seconds * rate))
    items, embedder = corpus_embedder(n, f"agent{k}", SEED + 1 + k)
    settings = Settings(sync_url=url, sync_background=follow)
    mem = StellarMemory(location, agent=f"agent-{k}", settings=settings, embedder=embedder, background=False)
    halt = threading.Event()
    publisher = None
    if follow:
        wait_visible(mem, seed_id, ready_timeout)
    else:  # the background publisher alone: woken by each commit
        publisher = threading.Thread(target=_publish_loop, args=(mem, halt), daemon=True)
        publisher.start()
    out.put(("ready", f"agent-{k}"))
    go.wait()
    c0 = cpu_seconds()
    start = start_at.value + k / (agents * rate)  # the agents' stores interleave
    give_up = start + seconds + max(10.0, seconds)  # an agent far behind its schedule stops
    records = []
    for i, item in enumerate(items):
        due = start + i / rate  # open loop: a late store does not delay the schedule
        if time.time() > give_up:
            break
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        t = time.time()
        memory_id = mem.store_many([item])[0].id
        done = time.time()
        records.append((memory_id, done, done - t))
    out.put(("written", k, records, time.time() - start, n - len(records)))
    stop.wait()
    halt.set()
    if publisher is not None:
        publisher.join()
    cpu = cpu_seconds() - c0
    mem.close()
    out.put(("closed", k, cpu))


def _publish_loop(mem: StellarMemory, halt: threading.Event) -> None:
    committed = threading.Event()
    mem.engine.on_commit(lambda _: committed.set())
    while not halt.is_set():
        committed.wait(1.0)
        committed.clear()
        publish_all(mem)


@dataclass
class LagResult:
    agents: int
    seconds: float
    rate: float
    follow: bool
    stores: int = 0
    skipped: int = 0  # stores an agent left out: it was too far behind its schedule
    write_seconds: float = 0.0  # the slowest agent's, from the start to its last store
    lags: list[float] = field(default_factory=list)  # commit -> visible (inf: never)
    publishing: list[float] = field(default_factory=list)  # commit -> in the stream
    applying: list[float] = field(default_factory=list)  # in the stream -> visible
    store_seconds: list[float] = field(default_factory=list)
    batches: list[tuple[float, int]] = field(default_factory=list)  # the observer's: (seconds, events)
    missing: int = 0
    hidden: int = 0  # applied, yet get() did not find it
    drain_limit: float = 0.0
    cpu: float = 0.0  # CPU seconds of all replicas during the phase
    wall: float = 0.0


def _next(q: Any, procs: Sequence[BaseProcess], timeout: float) -> tuple[Any, ...]:
    """The next message of a child; fails if one died or none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg: tuple[Any, ...] = q.get(timeout=1.0)
            return msg
        except queue.Empty:
            dead = [p.name for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"benchmark processes failed: {', '.join(map(str, dead))}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no word from the benchmark processes in {timeout:.0f} s") from None


def run_lag(
    url: str, root: Path, agents: int, seconds: float, rate: float, follow: bool, drain: float
) -> LagResult:
    ctx = multiprocessing.get_context("spawn")
    seed_id = seed_stream(url, root / "seed")
    out, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    start_at, seen = ctx.Value("d", 0.0), ctx.Value("q", 0)
    observer = ctx.Process(
        target=observer_main,
        args=(str(root / "observer"), url, seed_id, out, stop, seen, READY_SECONDS),
        name="observer",
    )
    writers = [
        ctx.Process(
            target=writer_main,
            name=f"agent-{k}",
            args=(
                k,
                str(root / f"agent-{k}"),
                url,
                seconds,
                rate,
                agents,
                follow,
                seed_id,
                out,
                go,
                stop,
                start_at,
                READY_SECONDS,
            ),
        )
        for k in range(agents)
    ]
    procs: list[BaseProcess] = [observer, *writers]
    for p in procs:
        p.start()
    res = LagResult(agents, seconds, rate, follow, drain_limit=drain)
    try:
        ready = 0
        while ready < len(procs):
            ready += _next(out, procs, READY_SECONDS)[0] == "ready"
        start_at.value = time.time() + 0.5
        go.set()
        committed: dict[str, float] = {}
        written = 0
        while written < agents:
            msg = _next(out, procs, seconds * 10 + 120)
            if msg[0] == "written":
                written += 1
                for memory_id, at, took in msg[2]:
                    committed[memory_id] = at
                    res.store_seconds.append(took)
                res.write_seconds = max(res.write_seconds, msg[3])
                res.skipped += msg[4]
        res.stores = len(committed)
        deadline = time.monotonic() + drain
        while seen.value < res.stores + 1 and time.monotonic() < deadline:  # + the seed
            time.sleep(0.05)
        stop.set()
        res.wall = time.time() - start_at.value
        closed = 0
        arrivals: list[tuple[str, float, float]] = []
        while closed < agents + 1:
            msg = _next(out, procs, 120)
            if msg[0] == "closed":
                closed += 1
                res.cpu += msg[2]
            elif msg[0] == "observer":
                closed += 1
                arrivals, res.hidden, cpu, res.batches = msg[1], msg[2], msg[3], msg[4]
                res.cpu += cpu
    finally:
        stop.set()
        go.set()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    visible = {mid: (at, streamed) for mid, at, streamed in arrivals}
    for memory_id, at in committed.items():
        got = visible.get(memory_id)
        if got is None:
            res.lags.append(math.inf)
            res.missing += 1
            continue
        res.lags.append(got[0] - at)
        res.publishing.append(got[1] - at)
        res.applying.append(got[0] - got[1])
    return res


def report_lag(r: LagResult) -> None:
    how = "replicas that sync in the background" if r.follow else "replicas that only publish"
    print("\n1. Replication lag: commit on one agent -> visible on another (a replica in another process)")
    print(f"   {r.agents} agents x {r.rate:g} stores/s for {r.seconds:g} s ({how}); {r.stores:,} stores")
    print(
        f"   write rate achieved: {r.stores / max(r.write_seconds, 1e-9):,.0f} stores/s "
        f"(the agents' schedules took {r.write_seconds:.1f} s)"
    )
    if r.skipped:
        print(f"   stores left out by agents too far behind their schedule: {r.skipped:,}")
    print("                                  p50 / p95 / p99 / max (ms)")
    print(f"   lag, commit -> visible:       {spread(r.lags)}   count {len(r.lags):,}")
    print(f"     commit -> in the stream:    {spread(r.publishing)}")
    print(f"     in the stream -> visible:   {spread(r.applying)}")
    print(f"   store() on the agents:        {spread(r.store_seconds)}")
    if r.batches:
        took = [t for t, _ in r.batches]
        events = sum(n for _, n in r.batches)
        print(
            f"   the observer's apply transactions: {spread(took)}; {len(took):,} of them, "
            f"{events / len(took):,.1f} events each, {sum(took) / max(events, 1) * 1000:.2f} ms per event"
        )
    if r.missing:
        print(f"   NOT visible within {r.drain_limit:.0f} s of the last store: {r.missing:,} of {r.stores:,}")
    if r.hidden:
        print(f"   applied but not found by get(): {r.hidden:,}")
    cores = os.cpu_count() or 1
    print(
        f"   CPU: the replicas used {r.cpu:,.1f} CPU-s in {r.wall:.1f} s "
        f"({r.cpu / max(r.wall, 1e-9):.2f} of {cores} cores; Redis not counted)"
    )
    ok = "ok" if ranked_ms(r.lags, 99) <= LAG_TARGET_MS else "MISS"
    print(f"   target: p99 <= {LAG_TARGET_MS:g} ms excluding embedding: {ok}")


# --- 2. events applied per second -----------------------------------------------------------
@dataclass
class ApplyResult:
    mode: str  # "vectors", "recalls" or "re-embed"
    events: int
    applied: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    cut_short: bool = False
    embedded: int = 0  # texts the receiver embedded
    embed_seconds: float = 0.0
    model: str = ""
    model_load_s: float = 0.0
    publish_rate: float = 0.0  # events/s from the outbox to Redis
    event_bytes: float = 0.0  # mean size of an event on the stream

    @property
    def rate(self) -> float:
        return self.applied / self.seconds if self.seconds else 0.0


def apply_child(url: str, root: str, n: int, real: bool, max_seconds: float) -> ApplyResult:
    """One replica publishes ``n`` store events; a fresh one applies them (timed)."""
    res = ApplyResult("re-embed" if real else "vectors", n)
    items, embedder = corpus_embedder(n, "apply", SEED + 100 + real)
    source = Settings(sync_url=url, sync_vectors=not real)
    with StellarMemory(
        Path(root) / "source", agent="source", settings=source, embedder=embedder, background=False
    ) as src:
        for b in range(0, n, BATCH):
            src.store_many(items[b : b + BATCH])
        t = time.perf_counter()
        published = publish_all(src)
        res.publish_rate = published / (time.perf_counter() - t)
        sample = src.sync.streams.range_after(src.namespace, "0-0", 200)
        res.event_bytes = float(np.mean([sum(map(len, fields.values())) for _, _, fields in sample]))
    receiver = TimedEmbedder(SentenceTransformerEmbedder() if real else embedder)
    if real:
        t = time.perf_counter()
        receiver.embed(["the model loads on first use"])
        res.model_load_s = time.perf_counter() - t
        receiver.texts, receiver.seconds = 0, 0.0
    res.model = receiver.model
    with StellarMemory(
        Path(root) / "receiver",
        agent="receiver",
        settings=Settings(sync_url=url),
        embedder=receiver,
        background=False,
    ) as mem:
        loop = pull_until(mem, n, max_seconds)
    res.applied, res.seconds, res.cpu, res.cut_short = loop.applied, loop.seconds, loop.cpu, loop.cut_short
    res.embedded, res.embed_seconds = receiver.texts, receiver.seconds
    return res


def recall_apply_child(url: str, root: str, n: int, max_seconds: float) -> ApplyResult:
    """Recall-count events: one replica counts recalls of ``n / 4`` memories and flushes four
    times (an event per memory and flush); a replica holding the memories applies them (timed)."""
    res = ApplyResult("recalls", n)
    k = max(1, n // 4)
    items, embedder = corpus_embedder(k, "recalls", SEED + 200)
    s = Settings(sync_url=url)
    here = Path(root)
    src = StellarMemory(here / "source", agent="source", settings=s, embedder=embedder, background=False)
    mem = StellarMemory(here / "receiver", agent="receiver", settings=s, embedder=embedder, background=False)
    try:
        for b in range(0, k, BATCH):
            src.store_many(items[b : b + BATCH])
        publish_all(src)
        pull_until(mem, k, 0)  # the memories first, not timed
        with src.engine.snapshot() as conn:
            seqs = list(conn.execute(sa.select(memories.c.seq)).scalars())
        for _ in range(4):  # what recall hits do: counts, written (and logged) by the next flush
            src.engine.counted(seqs, src.engine.clock.now())
            src.flush()
        t = time.perf_counter()
        res.publish_rate = publish_all(src) / (time.perf_counter() - t)
        loop = pull_until(mem, n, max_seconds)
    finally:
        src.close()
        mem.close()
    res.applied, res.seconds, res.cpu, res.cut_short = loop.applied, loop.seconds, loop.cpu, loop.cut_short
    res.model = embedder.model
    return res


def report_apply(results: Sequence[ApplyResult], max_seconds: float) -> None:
    print(f"\n2. Events applied per second by one replica (pull, {PULL_BATCH} events per transaction)")
    for r in results:
        if r.mode == "vectors":
            what = "vectors sent in the events (sync_vectors=true): the receiver embeds nothing"
        elif r.mode == "recalls":
            what = "recall-count events (a replica's recall statistics of memories the receiver holds)"
        else:
            what = f"no vectors in the events (sync_vectors=false): the receiver re-embeds with {r.model}"
        print(f"   {what}")
        cut = f" (stopped at the {max_seconds:g} s limit)" if r.cut_short else ""
        kind = "recall-count" if r.mode == "recalls" else "store"
        print(
            f"     {r.applied:,} of {r.events:,} {kind} events applied in {r.seconds:.1f} s{cut}: "
            f"{r.rate:,.0f} events/s (CPU {r.cpu:.1f} s)"
        )
        if r.embedded or r.mode == "re-embed":
            per = r.embedded / r.embed_seconds if r.embed_seconds else 0.0
            rest = r.applied / max(r.seconds - r.embed_seconds, 1e-9)
            load = f"; model load {r.model_load_s:.1f} s, not counted" if r.model_load_s else ""
            print(
                f"     of which embedding: {r.embed_seconds:.1f} s for {r.embedded:,} texts "
                f"({per:,.0f} texts/s); without it {rest:,.0f} events/s{load}"
            )
        size = f"; {r.event_bytes:,.0f} bytes per event on the stream" if r.event_bytes else ""
        print(f"     (publishing them: {r.publish_rate:,.0f} events/s outbox -> Redis{size})")
        if r.mode in ("vectors", "recalls"):
            ok = "ok" if r.rate >= APPLY_TARGET else "MISS"
            print(f"     target: >= {APPLY_TARGET:,.0f} events/s excluding embedding: {ok}")


# --- 3. catch-up ----------------------------------------------------------------------------
@dataclass
class CatchUpResult:
    changes: int
    store_seconds: float = 0.0
    publish_seconds: float = 0.0
    applied: int = 0
    other: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    cut_short: bool = False
    lag_after: int = -1  # the replica's lag_events when done
    memories_after: int = 0
    rss_before_mb: float = 0.0  # opened, before pulling
    rss_after_mb: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.applied / self.seconds if self.seconds else 0.0


def publish_child(url: str, location: str, n: int) -> tuple[float, float]:
    """The source stores ``n`` memories and publishes them; (store seconds, publish seconds)."""
    items, embedder = corpus_embedder(n, "bulk", SEED + 200)
    with StellarMemory(
        location, agent="source", settings=Settings(sync_url=url), embedder=embedder, background=False
    ) as src:
        t = time.perf_counter()
        for b in range(0, n, BATCH):
            src.store_many(items[b : b + BATCH])
        stored = time.perf_counter() - t
        t = time.perf_counter()
        publish_all(src)
        return stored, time.perf_counter() - t


def catch_up_child(url: str, location: str, max_seconds: float) -> CatchUpResult:
    """The replica back online, in a fresh process: pull until nothing is left."""
    _, embedder = corpus_embedder(1, "replica", SEED + 300)
    res = CatchUpResult(0)
    with StellarMemory(
        location, agent="replica", settings=Settings(sync_url=url), embedder=embedder, background=False
    ) as mem:
        res.rss_before_mb = rss_mb()[0]
        loop = pull_until(mem, None, max_seconds)
        res.applied, res.other, res.seconds, res.cpu, res.cut_short = (
            loop.applied,
            loop.other,
            loop.seconds,
            loop.cpu,
            loop.cut_short,
        )
        res.lag_after = sum(s.lag_events for s in mem.sync.status())
        res.memories_after = mem.stats().memories
        res.rss_after_mb = rss_mb()[0]
    res.peak_rss_mb = peak_rss_mb()
    return res


def run_catch_up(url: str, root: Path, n: int, max_seconds: float) -> CatchUpResult:
    seed_id = seed_stream(url, root / "source")
    _, embedder = corpus_embedder(1, "replica", SEED + 300)
    with StellarMemory(
        root / "replica",
        agent="replica",
        settings=Settings(sync_url=url),
        embedder=embedder,
        background=False,
    ) as mem:
        mem.sync.pull()  # joins the stream (its consumer group), applies the seed
        wait_visible(mem, seed_id, 10)
    # offline now, while the source publishes
    stored, published = in_child(publish_child, url, str(root / "source"), n)
    res: CatchUpResult = in_child(catch_up_child, url, str(root / "replica"), max_seconds)
    res.changes, res.store_seconds, res.publish_seconds = n, stored, published
    return res


def report_catch_up(r: CatchUpResult, max_seconds: float) -> None:
    print(f"\n3. Catch-up: a replica offline while {r.changes:,} changes (stores) were published")
    print(
        f"   (the source stored them in {r.store_seconds:.1f} s and published them in "
        f"{r.publish_seconds:.1f} s: {r.changes / max(r.publish_seconds, 1e-9):,.0f} events/s)"
    )
    cut = f", stopped at the {max_seconds:g} s limit" if r.cut_short else ""
    print(
        f"   caught up {r.applied:,} changes in {r.seconds:.1f} s{cut}: {r.rate:,.0f} changes/s "
        f"(CPU {r.cpu:.1f} s); lag afterwards {r.lag_after:,} events"
    )
    if r.cut_short and r.rate:
        print(f"   at that rate all {r.changes:,} would take {r.changes / r.rate:,.0f} s")
    if r.other:
        print(f"   (also {r.other:,} duplicates, waiting or refused)")
    print(f"   memories in the replica afterwards: {r.memories_after:,}")
    print(
        f"   memory of the catching-up process: RSS {r.rss_before_mb:,.0f} MB opened, "
        f"{r.rss_after_mb:,.0f} MB after; peak {r.peak_rss_mb:,.0f} MB (getrusage)"
    )


# --- main -----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 agents x 2 s, 2k applied, 5k catch-up")
    ap.add_argument(
        "--phases", nargs="+", choices=["lag", "apply", "catchup"], default=["lag", "apply", "catchup"]
    )
    ap.add_argument("--agents", type=int, help="writing agents (default 10)")
    ap.add_argument("--rate", type=float, default=50.0, help="stores per second per agent")
    ap.add_argument("--seconds", type=float, help="how long the agents write (default 10)")
    ap.add_argument(
        "--writers",
        choices=["follow", "publish"],
        default="follow",
        help="follow: each agent applies the others' changes too (sync_background); publish: only publishes",
    )
    ap.add_argument(
        "--drain", type=float, default=60.0, help="wait this long after the writes for the observer"
    )
    ap.add_argument("--apply", type=int, help="store events applied with vectors sent (default 20,000)")
    ap.add_argument(
        "--real", type=int, help="events re-embedded with the real model (default 2,000; 0: skip)"
    )
    ap.add_argument("--catchup", type=int, help="changes the offline replica catches up on (default 100,000)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="limit of each timed pull loop (0: none)")
    args = ap.parse_args(argv)
    quick = args.quick
    agents = args.agents or (3 if quick else 10)
    seconds = args.seconds or (2.0 if quick else 10.0)
    n_apply = args.apply or (2_000 if quick else 20_000)
    n_real = args.real if args.real is not None else (200 if quick else 2_000)
    n_catchup = args.catchup or (5_000 if quick else 100_000)

    started = time.perf_counter()
    lag: LagResult | None = None
    applied: list[ApplyResult] = []
    caught: CatchUpResult | None = None
    with tempfile.TemporaryDirectory(prefix="stellar-bench-sync-") as tmp:
        root = Path(tmp)
        redis = Redis(root / "redis", persistent=True)
        redis.start()
        try:  # each phase on its own Redis database: streams of its own
            if "lag" in args.phases:
                lag = run_lag(
                    redis.url(0),
                    root / "lag",
                    agents,
                    seconds,
                    args.rate,
                    args.writers == "follow",
                    args.drain,
                )
            if "apply" in args.phases:
                applied.append(
                    in_child(apply_child, redis.url(1), str(root / "apply"), n_apply, False, args.max_seconds)
                )
                applied.append(
                    in_child(
                        recall_apply_child, redis.url(4), str(root / "recalls"), n_apply, args.max_seconds
                    )
                )
                if n_real:
                    applied.append(
                        in_child(
                            apply_child, redis.url(2), str(root / "real"), n_real, True, args.max_seconds
                        )
                    )
            if "catchup" in args.phases:
                caught = run_catch_up(redis.url(3), root / "catchup", n_catchup, args.max_seconds)
        finally:
            redis.stop()

    print(f"\nStellar Memory sync benchmark: SQLite replicas, Redis Streams ({os.cpu_count()} CPUs)")
    if lag is not None:
        report_lag(lag)
    if applied:
        report_apply(applied, args.max_seconds)
    if caught is not None:
        report_catch_up(caught, args.max_seconds)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
