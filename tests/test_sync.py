"""Sync between replicas over a real Redis: publishing, applying, bad input, a Redis restart,
a clock running ahead, a replica far behind or behind the trim point, subscriptions, status,
access control and encryption. (The merge's convergence: test_sync_merge.py; processes
killed and writing concurrently: test_sync_processes.py.)"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa

from stellar_core import (
    ChangeEvent,
    PermissionDenied,
    Settings,
    StellarMemory,
    SteppingClock,
    SyncError,
    SyncUnavailable,
)
from stellar_core.embeddings import Embedder
from stellar_core.store.schema import memories
from stellar_core.sync.wire import sign
from tests.services import Redis
from tests.sync_agent import NS, canonical, digest

Open = Callable[..., StellarMemory]
KEY = "q0R1Y2Jvbm9yYml0LXNlY3JldC1rZXktMzItYnl0ZXM="  # 32 bytes, base64


@pytest.fixture
def redis_url(redis_server: Redis) -> Iterator[str]:
    """A clean Redis database of the session's server."""
    url = redis_server.url(3)
    redis_lib.Redis.from_url(url).flushdb()
    yield url


@pytest.fixture
def replica(tmp_path: Path, embedder: Embedder, redis_url: str) -> Iterator[Open]:
    """Opens replicas (a data directory each) syncing through the test's Redis."""
    opened: list[StellarMemory] = []

    def _open(name: str, clock: Any = None, **settings: Any) -> StellarMemory:
        s = Settings(sync_url=settings.pop("sync_url", redis_url), stats_flush_seconds=0.1, **settings)
        mem = StellarMemory(tmp_path / name, agent=name, settings=s, embedder=embedder,
                            clock=clock or SteppingClock(), background=False)  # fmt: skip
        opened.append(mem)
        return mem

    yield _open
    for mem in opened:
        with contextlib.suppress(Exception):  # closed by the test
            mem.close()


def sync(*mems: StellarMemory, rounds: int = 3) -> None:
    """Publish and apply until every replica has everything."""
    for _ in range(rounds):
        for mem in mems:
            mem.flush()
            while mem.sync.publish():
                pass
        for mem in mems:
            while mem.sync.pull([NS]).received:
                pass


def test_a_change_on_one_replica_reaches_the_other(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b")
    x = a.store("The deploy key lives in the vault", namespace=NS, tags=["ops"])
    y = a.store("The vault is at vault.example.com", namespace=NS)
    a.link(x.id, y.id, kind="about", weight=0.7, namespace=NS)
    sync(a, b)
    assert [h.memory.id for h in b.recall("where is the deploy key?", k=1, namespace=NS)] == [x.id]
    assert b.links(x.id, direction="out", namespace=NS)[0].weight == 0.7
    b.update(x.id, content="The deploy key moved to the HSM", namespace=NS)
    b.forget(y.id, namespace=NS)
    sync(a, b)
    assert a.get(x.id, namespace=NS).content == "The deploy key moved to the HSM"
    assert [h.memory.id for h in a.recall("HSM deploy key", k=1, namespace=NS)] == [x.id]  # re-indexed
    assert y.id not in {h.memory.id for h in a.recall("vault.example.com", namespace=NS)}
    assert digest(canonical(a)) == digest(canonical(b))
    # The stream carried each change once; applying them again changes nothing.
    assert b.sync.status(NS)[0].lag_events == 0


def test_recall_counts_add_up_across_replicas_and_are_never_counted_twice(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b")
    x = a.store("The standup is at nine", namespace=NS)
    sync(a, b)
    for _ in range(3):
        a.recall("when is the standup?", k=1, namespace=NS)
    for _ in range(2):
        b.recall("when is the standup?", k=1, namespace=NS)
    sync(a, b)
    assert a.get(x.id, namespace=NS).recall_count == b.get(x.id, namespace=NS).recall_count == 5
    # Redelivered (a consumer died before acknowledging): still 5.
    r = redis_lib.Redis.from_url(b.settings.sync_url)
    entries = r.xrange(f"stellar:sync:{NS}")
    b.sync.apply(NS, [(NS, i.decode(), f) for i, f in entries])
    assert b.get(x.id, namespace=NS).recall_count == 5


def test_concurrent_edits_are_merged_recorded_and_resolved_by_hand(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b")
    x = a.store("Lunch is at noon", namespace=NS)
    sync(a, b)
    a.update(x.id, content="Lunch is at one", namespace=NS)  # neither has seen the other's
    b.update(x.id, content="Lunch is at half past twelve", importance=0.9, namespace=NS)
    sync(a, b)
    winner = a.get(x.id, namespace=NS).content
    assert winner == b.get(x.id, namespace=NS).content  # the same everywhere (last writer wins)
    assert b.get(x.id, namespace=NS).importance == a.get(x.id, namespace=NS).importance == 0.9
    (ca,), (cb,) = a.sync.conflicts(NS), b.sync.conflicts(NS)
    assert ca.fields == cb.fields == ("content",)
    assert {ca.winner["values"]["content"], ca.loser["values"]["content"]} == {
        "Lunch is at one", "Lunch is at half past twelve"}  # fmt: skip
    assert ca.winner["values"]["content"] == winner
    kept = a.sync.resolve(ca.id, keep="loser", namespace=NS)
    assert kept.content == ca.loser["values"]["content"]
    sync(a, b)
    assert b.get(x.id, namespace=NS).content == kept.content
    assert a.sync.conflicts(NS) == [] and b.sync.conflicts(NS) == []  # settled there too
    assert b.sync.conflicts(NS, resolved=True)[0].resolution.startswith("superseded by")


def test_forget_wins_over_a_concurrent_edit(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b")
    x = a.store("The old office is on Elm Street", namespace=NS)
    sync(a, b)
    a.forget(x.id, namespace=NS)
    b.update(x.id, content="The old office is on Oak Street", namespace=NS)
    sync(a, b)
    for mem in (a, b):
        assert x.id not in {h.memory.id for h in mem.recall("old office street", namespace=NS)}
    assert digest(canonical(a)) == digest(canonical(b))


def test_bad_events_are_held_with_the_reason_and_the_good_ones_applied(replica: Open, redis_url: str) -> None:
    a = replica("agent-a", sync_secret="s3cret")
    b = replica("agent-b", sync_secret="s3cret")
    a.store("first good one", namespace=NS)
    a.sync.publish()
    r, key = redis_lib.Redis.from_url(redis_url), f"stellar:sync:{NS}"
    good = json.loads(r.xrange(key)[0][1][b"e"])
    r.xadd(key, {"e": b"{not json", "s": sign(b"{not json", b"s3cret").encode()})
    r.xadd(key, {"e": json.dumps(good | {"id": "evil:1"}).encode(), "s": b"0" * 64})  # forged
    newer = json.dumps(good | {"v": 99, "id": "x:2"}).encode()
    r.xadd(key, {"e": newer, "s": sign(newer, b"s3cret").encode()})
    other_ns = json.dumps(good | {"ns": "elsewhere", "id": "x:3"}).encode()
    r.xadd(key, {"e": other_ns, "s": sign(other_ns, b"s3cret").encode()})
    a.store("second good one", namespace=NS)
    a.sync.publish()
    done = b.sync.pull([NS])
    assert (done.applied, done.refused) == (2, 4)
    reasons = sorted(h["reason"] for h in b.sync.held(NS))
    assert any("not JSON" in x for x in reasons)
    assert any("forged" in x for x in reasons)
    assert any("newer than this code" in x for x in reasons)
    assert any("namespace 'elsewhere'" in x for x in reasons)
    assert b.stats(namespace=NS).memories == 2
    assert b.sync.status(NS)[0].held == 4


def test_redis_gone_then_restarted_with_its_streams(tmp_path: Path, embedder: Embedder) -> None:
    server = Redis(tmp_path / "redis", persistent=True)  # as the project configures sync's Redis
    server.start()
    try:
        s = Settings(sync_url=server.url(), stats_flush_seconds=0.1)

        def open_(name: str) -> StellarMemory:
            return StellarMemory(tmp_path / name, agent=name, settings=s, embedder=embedder, background=False)

        a, b = open_("agent-a"), open_("agent-b")
        a.store("before the restart", namespace=NS)
        sync(a, b)
        a.store("published before the restart, applied after", namespace=NS)
        a.sync.publish()
        time.sleep(1.2)  # the append-only file is written every second
        server.stop()
        a.store("written while Redis was down", namespace=NS)
        with pytest.raises(SyncUnavailable):
            a.sync.publish()
        assert a.sync.status(NS)[0].connected is False
        assert a.sync.status(NS)[0].unpublished == 1  # kept in the outbox
        server.start()
        sync(a, b)
        assert b.stats(namespace=NS).memories == 3
        assert digest(canonical(a)) == digest(canonical(b))
        a.close()
        b.close()
    finally:
        server.stop()


def test_background_sync_rides_out_a_redis_outage(tmp_path: Path, embedder: Embedder) -> None:
    server = Redis(tmp_path / "redis", persistent=True)
    server.start()
    s = Settings(sync_url=server.url(), sync_background=True, sync_block_ms=200)
    a = StellarMemory(tmp_path / "a", agent="agent-a", settings=s, embedder=embedder, background=False)
    b = StellarMemory(tmp_path / "b", agent="agent-b", settings=s, embedder=embedder, background=False)
    try:
        x = a.store("one", namespace=NS)
        _wait(lambda: _has(b, x.id))
        server.stop()
        y = a.store("two, while Redis is away", namespace=NS)
        time.sleep(1.5)
        server.start()
        _wait(lambda: _has(b, y.id), timeout=30)
    finally:
        a.close()
        b.close()
        server.stop()


def test_an_agent_whose_clock_runs_five_minutes_ahead(replica: Open) -> None:
    now = SteppingClock()
    ahead = SteppingClock(now.now() + 300)
    a, b = replica("agent-a", clock=now), replica("agent-b", clock=ahead)
    x = a.store("The build server is idle", namespace=NS)
    sync(a, b)
    b.update(x.id, content="The build server is busy", namespace=NS)  # stamped 5 minutes ahead
    sync(a, b)
    now.advance(seconds=10)
    a.update(x.id, content="The build server is down", namespace=NS)  # after seeing b's: orders after
    sync(a, b)
    assert (
        a.get(x.id, namespace=NS).content == b.get(x.id, namespace=NS).content == "The build server is down"
    )
    assert a.sync.conflicts(NS) == []
    # Concurrent edits: the one with the later clock wins, and both versions are kept.
    b.update(x.id, importance=0.2, namespace=NS)
    a.update(x.id, importance=0.8, namespace=NS)
    sync(a, b)
    assert a.get(x.id, namespace=NS).importance == b.get(x.id, namespace=NS).importance
    assert len(a.sync.conflicts(NS)) == 1
    assert digest(canonical(a)) == digest(canonical(b))


@pytest.mark.slow
def test_a_replica_offline_for_ten_thousand_changes_catches_up(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b", sync_batch=1000)
    sync(a, b)  # b joins, then goes away
    made = a.store_many([f"note {i} on the quarterly plan" for i in range(1_000)], namespace=NS)
    with a.engine.snapshot() as conn:
        seqs = list(conn.execute(sa.select(memories.c.seq).where(memories.c.namespace == NS)).scalars())
    for _ in range(9):  # 9,000 more changes: recall counts of every memory
        a.engine.counted(seqs, a.engine.clock.now())
        a.flush()
    for i in range(0, 20):
        a.update(made[i].id, importance=0.9, namespace=NS)
    while a.sync.publish(5_000):
        pass
    assert b.sync.status(NS)[0].lag_events >= 10_000
    started = time.perf_counter()
    while b.sync.pull([NS]).received:
        pass
    took = time.perf_counter() - started
    assert b.sync.status(NS)[0].lag_events == 0
    assert digest(canonical(a)) == digest(canonical(b))
    assert took < 120


def test_a_replica_behind_the_trim_point_bootstraps_from_a_snapshot(replica: Open, tmp_path: Path) -> None:
    hub = replica("hub")
    a = replica("agent-a", sync_retention_hours=1e-9, sync_max_retention_hours=1e-9)
    x = a.store("Kept through the trim", namespace=NS)
    y = a.store("Edited before the trim", namespace=NS)
    sync(a, hub)
    a.update(y.id, importance=0.95, namespace=NS)
    a.link(x.id, y.id, namespace=NS)
    sync(a, hub)
    time.sleep(0.01)
    assert a.sync.trim([NS]) > 0  # every group applied them, and the retention has passed
    late = replica("agent-late")
    with pytest.raises(SyncError, match="behind the trim point"):
        late.sync.pull([NS])
    late.close()
    hub_url = f"sqlite:///{tmp_path / 'hub' / 'stellar.db'}"
    late = replica("agent-late2", sync_snapshot_url=hub_url)
    sync(late)  # bootstraps on its own, then follows the stream
    assert digest(canonical(late)) == digest(canonical(hub)) == digest(canonical(a))
    assert late.sync.status(NS)[0].needs_bootstrap is False
    a.store("after the bootstrap", namespace=NS)
    sync(a, late)
    assert late.stats(namespace=NS).memories == 3


def test_a_subscription_hears_every_replicas_changes_as_they_happen(replica: Open) -> None:
    a, b = replica("agent-a"), replica("agent-b")
    heard: list[ChangeEvent] = []
    sub = b.sync.subscribe(NS, heard.append)
    try:
        x = a.store("Heard at once", namespace=NS)
        a.sync.publish()
        _wait(lambda: any(e.memory_id == x.id for e in heard))
        assert heard[-1].op.value == "store" and heard[-1].agent == "agent-a"
    finally:
        sub.close()


def test_a_replica_follows_only_the_namespaces_its_principal_may_read(replica: Open) -> None:
    a = replica("agent-a")
    a.store("team news", namespace="team")
    a.store("board minutes", namespace="board")
    a.sync.publish()
    b = replica("agent-b", access_control=True, admins=["root"])
    b.security.grant("agent-b", "team*", "reader", principal="root")
    assert b.sync.namespaces() == ["team"]
    b.sync.pull()
    assert b.stats(namespace="team", principal="root").memories == 1
    assert b.stats(namespace="board", principal="root").memories == 0


def test_sync_calls_are_refused_to_whoever_may_not_read_the_namespace(replica: Open) -> None:
    a = replica("agent-a", access_control=True, admins=["root"])
    x = a.store("board minutes", namespace="board", principal="root")
    a.security.grant("reader-1", "board", "reader", principal="root")
    calls: list[Callable[[], object]] = [
        lambda: a.sync.status("board", principal="mallory"),
        lambda: a.sync.conflicts("board", principal="mallory"),
        lambda: a.sync.held("board", principal="mallory"),
        lambda: a.sync.subscribe("board", print, principal="mallory"),
        lambda: a.sync.resolve(1, "loser", namespace="board", principal="reader-1"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    assert a.sync.status(principal="mallory") == []  # the namespaces it may not read are not listed
    assert a.sync.status("board", principal="reader-1")[0].namespace == "board"
    assert a.get(x.id, namespace="board", principal="root").content == "board minutes"


def test_encrypted_memories_travel_sealed(replica: Open, redis_url: str) -> None:
    a = replica("agent-a", encryption_key=KEY)
    b = replica("agent-b", encryption_key=KEY)
    nokey = replica("agent-c")
    x = a.store("The root password is hunter2", encrypted=True, namespace=NS)
    a.sync.publish()
    raw = b"".join(f[b"e"] for _, f in redis_lib.Redis.from_url(redis_url).xrange(f"stellar:sync:{NS}"))
    assert b"hunter2" not in raw
    b.sync.pull([NS])
    assert b.get(x.id, namespace=NS).content == "The root password is hunter2"
    assert [h.memory.id for h in b.recall("root password", k=1, namespace=NS)] == [x.id]
    done = nokey.sync.pull([NS])
    assert done.refused == 1 and "no encryption key" in nokey.sync.held(NS)[0]["reason"]


def _has(mem: StellarMemory, memory_id: str) -> bool:
    try:
        mem.get(memory_id, namespace=NS)
    except Exception:
        return False
    return True


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
