"""What the sync tests share: a replica's state in canonical form, and an agent process.

    python -m tests.sync_agent LOCATION AGENT SYNC_URL SEED OPS

runs one agent on its own replica (a data directory or database URL) with sync in the
background: ``OPS`` random operations (store, update, forget, link, recall) on what its
replica holds, a few per 100 ms, then prints ``done`` and keeps syncing until SIGTERM, when it
closes (publishing what is left) and exits.

    python -m tests.sync_agent consume LOCATION SYNC_URL

applies other replicas' events (re-embedding their content) in batches until killed.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import sys
import threading
from typing import Any

import sqlalchemy as sa

from stellar_core import NotFoundError, Settings, StellarMemory

NS = "shared"


def canonical(mem: StellarMemory, namespace: str = NS) -> dict[str, Any]:
    """The replicated state of a namespace: every memory (tombstones too) with the fields
    sync merges, its recall count and its tags, and every link. Local bookkeeping (zones,
    scores, clocks, times of access) is left out: each replica keeps its own."""
    with mem.engine.snapshot() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT m.id, m.content, m.content_hash, m.importance, m.pinned, m.meta, m.thread, "
                "m.position, m.deleted_at, m.recall_count, m.seq FROM memories m WHERE m.namespace = :ns "
                "ORDER BY m.id"
            ),
            {"ns": namespace},
        ).all()
        tags: dict[int, list[str]] = {}
        for seq, tag in conn.execute(sa.text("SELECT memory_seq, tag FROM memory_tags")):
            tags.setdefault(seq, []).append(tag)
        links = conn.execute(
            sa.text(
                "SELECT source_id, target_id, kind, weight FROM links WHERE namespace = :ns "
                "ORDER BY source_id, target_id, kind"
            ),
            {"ns": namespace},
        ).all()
    memories = [
        {
            "id": r.id, "content": r.content, "hash": r.content_hash, "importance": round(r.importance, 9),
            "pinned": bool(r.pinned), "meta": r.meta if isinstance(r.meta, dict) else json.loads(r.meta),
            "thread": r.thread, "position": r.position, "deleted_at": r.deleted_at, "recalls": r.recall_count,
            "tags": sorted(tags.get(r.seq, [])),
        }
        for r in rows
    ]  # fmt: skip
    return {"memories": memories, "links": [list(x) for x in links]}


def digest(state: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def act(mem: StellarMemory, rng: random.Random, agent: str, n: int) -> None:
    """One random operation on what this replica holds (``n`` makes stored texts unique)."""
    live = mem.memories(limit=200, namespace=NS)
    kind = rng.choice(["store", "store", "update", "update", "forget", "link", "recall"]) if live else "store"
    try:
        if kind == "store":
            colour = rng.choice(["blue", "red", "green"])
            tags = [rng.choice(["ops", "dev"])]
            mem.store(
                f"{agent} noted fact {n}: the {colour} service",
                namespace=NS,
                importance=rng.random(),
                tags=tags,
            )
        elif kind == "update":
            x = rng.choice(live)
            field = rng.choice(["content", "importance", "pinned", "tags", "metadata"])
            values: dict[str, Any] = {
                "content": {"content": f"{agent} rewrote {x.id[-6:]} ({n})"},
                "importance": {"importance": round(rng.random(), 3)},
                "pinned": {"pinned": rng.random() < 0.5},
                "tags": {"tags": [agent, rng.choice(["a", "b"])]},
                "metadata": {"metadata": {"by": agent, "n": n}},
            }[field]
            mem.update(x.id, namespace=NS, **values)
        elif kind == "forget":
            mem.forget(rng.choice(live).id, namespace=NS)
        elif kind == "link" and len(live) > 1:
            a, b = rng.sample(live, 2)
            kind = rng.choice(["related", "follows"])
            mem.link(a.id, b.id, kind=kind, weight=round(rng.uniform(0.1, 1), 2), namespace=NS)
        elif kind == "recall":
            mem.recall(rng.choice(live).content[:40], k=3, namespace=NS)
    except NotFoundError:  # forgotten here meanwhile (another agent's forget arrived)
        pass


def consume(location: str, url: str) -> int:
    settings = Settings(sync_url=url, sync_batch=100)
    with StellarMemory(location, agent="consumer", settings=settings, background=False) as mem:
        print("ready", flush=True)
        while True:
            mem.sync.pull([NS], block_ms=200)


def main(argv: list[str]) -> int:
    if argv[0] == "consume":
        return consume(argv[1], argv[2])
    location, agent, url, seed, ops = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    settings = Settings(
        sync_url=url, sync_background=True, sync_claim_idle_seconds=2, stats_flush_seconds=0.2
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(seed)
    with StellarMemory(location, agent=agent, settings=settings) as mem:
        for n in range(ops):
            act(mem, rng, agent, n)
            stop.wait(rng.uniform(0.005, 0.05))
        mem.flush()
        print("done", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
