"""The merge is a CRDT: random operations by three agents, their events delivered to each
other in random orders, with duplicates and delays (some arrive long after later ones), end in
identical states on every replica (hypothesis).

The events are the ones the replicas publish (``Sync.outbox``: the wire format, vectors
included), applied through ``Sync.apply`` to real SQLite replicas; only the transport (Redis,
tested in test_sync.py) is left out, so that delivery order is the test's to choose.
"""

from __future__ import annotations

import functools
import random
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellar_core import NotFoundError, Settings, StellarMemory, SteppingClock
from stellar_core.embeddings import Embedder
from stellar_core.store.schema import memories
from stellar_core.sync.streams import Entry
from tests.sync_agent import NS, canonical, digest

AGENTS = ("agent-a", "agent-b", "agent-c")
_SEQ = sa.select(memories.c.seq).where(memories.c.id == sa.bindparam("id"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A migrated, empty replica database to copy (opening a new one migrates it: slow)."""
    path = tmp_path_factory.mktemp("template") / "stellar.db"
    StellarMemory(path, embedder=embedder, background=False).close()
    return path


class Replicas:
    """Three replicas, and every event each has published so far (what the others may receive)."""

    def __init__(self, root: Path, template: Path, embedder: Embedder) -> None:
        self.clock = SteppingClock()
        s = Settings(sync_url="redis://127.0.0.1:1/0")  # never reached: events are handed over here
        self.mems: dict[str, StellarMemory] = {}
        for agent in AGENTS:
            path = root / agent / "stellar.db"
            path.parent.mkdir(parents=True)
            shutil.copy(template, path)
            with sqlite3.connect(path) as db:  # each copy is a replica of its own
                db.execute("UPDATE stellar_meta SET value = ? WHERE key = 'replica_id'", (uuid.uuid4().hex,))
            self.mems[agent] = StellarMemory(path, agent=agent, settings=s, embedder=embedder,
                                             clock=self.clock, background=False)  # fmt: skip
        self.sent: dict[str, list[Entry]] = {a: [] for a in AGENTS}
        self.given: dict[tuple[str, str], int] = {}  # (from, to) -> events handed over so far

    def collect(self, agent: str) -> None:
        mem = self.mems[agent]
        mem.flush()
        waiting = mem.sync.outbox(10_000)
        self.sent[agent] += [
            (ns, f"0-{seq}", {k.encode(): v for k, v in f.items()}) for seq, ns, f in waiting
        ]
        mem.sync.published([seq for seq, _, _ in waiting])

    def deliver(self, src: str, dst: str, n: int, rng: random.Random, dup: float) -> None:
        """The next ``n`` events from ``src`` to ``dst``, shuffled, some twice."""
        start = self.given.get((src, dst), 0)
        batch = self.sent[src][start : start + n]
        self.given[(src, dst)] = start + len(batch)
        batch = batch + [e for e in batch if rng.random() < dup]
        rng.shuffle(batch)
        self._apply(dst, batch)

    def deliver_all(self, rng: random.Random) -> None:
        """Everything to everyone, in a random order, with duplicates of old events too."""
        for dst in AGENTS:
            batch = [e for src in AGENTS if src != dst for e in self.sent[src]]
            batch += rng.sample(batch, len(batch) // 4)
            rng.shuffle(batch)
            self._apply(dst, batch)

    def _apply(self, dst: str, batch: list[Entry]) -> None:
        for i in range(0, len(batch), 7):  # in several transactions
            self.mems[dst].sync.apply(NS, batch[i : i + 7])

    def close(self) -> None:
        for mem in self.mems.values():
            mem.close()


agent_ = st.sampled_from(AGENTS)
step = st.one_of(
    st.tuples(st.just("store"), agent_),
    st.tuples(
        st.just("update"),
        agent_,
        st.integers(0, 50),
        st.sampled_from(["content", "importance", "pinned", "tags", "metadata"]),
        st.integers(0, 3),
    ),
    st.tuples(st.just("forget"), agent_, st.integers(0, 50)),
    st.tuples(
        st.just("link"), agent_, st.integers(0, 50), st.integers(0, 50), st.sampled_from([0.3, 0.6, 0.9])
    ),
    st.tuples(st.just("recall"), agent_, st.integers(0, 50)),
    st.tuples(st.just("deliver"), agent_, agent_, st.integers(1, 8)),
    st.tuples(st.just("tick"), st.integers(0, 2_000)),
)


def run(reps: Replicas, steps: list[tuple[Any, ...]], rng: random.Random) -> None:
    made = 0
    for s in steps:
        kind = s[0]
        if kind == "tick":
            reps.clock.advance(seconds=s[1] / 1000)
            continue
        if kind == "deliver":
            if s[1] != s[2]:
                reps.deliver(s[1], s[2], s[3], rng, dup=0.3)
            continue
        agent = s[1]
        mem = reps.mems[agent]
        live = sorted(mem.memories(limit=100, namespace=NS), key=lambda x: x.id)
        pick = functools.partial(_nth, live)
        try:
            if kind == "store" or not live:
                made += 1
                mem.store(f"{agent} fact {made}", namespace=NS, tags=["t"])
            elif kind == "update":
                x, value = pick(s[2]), s[4]
                change: dict[str, Any] = {
                    "content": {"content": f"{agent} says {x.id[-4:]} is v{value} ({made})"},
                    "importance": {"importance": value / 4},
                    "pinned": {"pinned": bool(value % 2)},
                    "tags": {"tags": [f"{agent}-{value}"]},
                    "metadata": {"metadata": {"v": value, "by": agent}},
                }[s[3]]
                made += 1
                mem.update(x.id, namespace=NS, **change)
            elif kind == "forget":
                mem.forget(pick(s[2]).id, namespace=NS)
            elif kind == "link":
                a, b = pick(s[2]), pick(s[3])
                if a.id != b.id:
                    mem.link(a.id, b.id, weight=s[4], namespace=NS)
            elif kind == "recall":
                x = pick(s[2])
                seq = mem.engine.db.peek(_SEQ, {"id": x.id})
                assert seq is not None
                mem.engine.counted([seq[0]], reps.clock.now())
        except NotFoundError:
            pass
        reps.collect(agent)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=5, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_any_delivery_order_with_duplicates_converges(
    steps: list[tuple[Any, ...]],
    seed: int,
    template: Path,
    embedder: Embedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rng = random.Random(seed)
    reps = Replicas(tmp_path_factory.mktemp("crdt"), template, embedder)
    try:
        run(reps, steps, rng)
        reps.deliver_all(rng)
        states = {a: canonical(m) for a, m in reps.mems.items()}
        assert len({digest(s) for s in states.values()}) == 1, _difference(states)
        for mem in reps.mems.values():  # nothing still waits for a memory that never came
            assert [h for h in mem.sync.held(NS) if h["awaits"]] == []
        # Applying everything once more changes nothing (idempotent).
        before = digest(states[AGENTS[0]])
        reps.deliver_all(rng)
        assert digest(canonical(reps.mems[AGENTS[0]])) == before
    finally:
        reps.close()


def _nth(items: list[Any], i: int) -> Any:
    return items[i % len(items)]


def _difference(states: dict[str, dict[str, Any]]) -> str:
    a, *others = states
    out = []
    for b in others:
        ma = {x["id"]: x for x in states[a]["memories"]}
        mb = {x["id"]: x for x in states[b]["memories"]}
        for mid in sorted(ma.keys() | mb.keys()):
            if ma.get(mid) != mb.get(mid):
                out.append(f"{a} vs {b} {mid}: {ma.get(mid)} != {mb.get(mid)}")
        if states[a]["links"] != states[b]["links"]:
            out.append(f"links {a}: {states[a]['links']} {b}: {states[b]['links']}")
    return "\n".join(out[:6])
