"""Lifecycle of memories, walked with a stepping clock: drift, recall, forgetting, purging, zones.

Under default settings a memory's score is 0.4 * freshness + 0.3 * importance (+ recalls), so an
importance-0.4 memory starts in Inner (0.52) and sinks towards 0.12 (Cloud) as it idles.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from stellar_core import NotFoundError, Settings, StellarMemory, Zone
from stellar_core.scoring import forget_after_days
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.backends

# Thresholds low enough that every fresh memory qualifies for Core: capacities alone decide.
LOW_THRESHOLDS = {
    "core_threshold": 0.4,
    "inner_threshold": 0.3,
    "outer_threshold": 0.2,
    "belt_threshold": 0.1,
}


def query(mem: StellarMemory, sql: str, *args: object) -> list[tuple]:
    """Plain SQL on the memory's own database (``?`` placeholders, either backend)."""
    names = iter(range(len(args)))
    sql = re.sub(r"\?", lambda _: f":p{next(names)}", sql)
    with mem.engine.db.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), {f"p{i}": a for i, a in enumerate(args)})]


def changes(mem: StellarMemory, memory_id: str) -> list[tuple]:
    """(op, agent) of a memory's change-log rows, oldest first."""
    return query(mem, "SELECT op, agent FROM changes WHERE memory_id = ? ORDER BY seq", memory_id)


def count_statements(mem) -> list[str]:
    """SQL statements the memory's engine executes from now on (executemany counts once)."""
    seen: list[str] = []
    sa.event.listen(
        mem.engine.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2].split(None, 1)[0])
    )
    return seen


def zone_counts(**counts: int) -> dict[Zone, int]:
    return {z: counts.get(z.value, 0) for z in Zone}


def test_memory_drifts_out_is_forgotten_then_purged(mem, clock, tmp_path):
    keeper, memo = mem.store_many(
        [
            {"content": "The office wifi password is taped under the router", "pinned": True},
            {"content": "Lunch on Tuesday was a cheese sandwich", "importance": 0.4},
        ]
    )
    mem.link(keeper.id, memo.id)
    mem.link(memo.id, keeper.id, kind="follows")
    assert memo.zone == Zone.INNER

    zones = [memo.zone]
    for _ in range(12):  # 60 idle days in 5-day steps
        clock.advance(days=5)
        assert mem.reorbit().forgotten == 0
        zones.append(mem.get(memo.id).zone)
    assert [z.rank for z in zones] == sorted(z.rank for z in zones), zones
    assert {Zone.INNER, Zone.OUTER, Zone.BELT, Zone.CLOUD} <= set(zones)
    assert zones[-1] == Zone.CLOUD

    # Forgotten after 30 * (1 + 5 * 0.4) = 90 idle days.
    clock.advance(days=29)
    assert mem.reorbit().forgotten == 0
    clock.advance(days=1)
    report = mem.reorbit()
    assert report.forgotten == 1
    with pytest.raises(NotFoundError):
        mem.get(memo.id)
    stats = mem.stats()
    assert (stats.memories, stats.forgotten) == (1, 1)
    me = mem.principal.id
    assert changes(mem, memo.id) == [("store", me), ("link", me), ("forget", me)]
    assert query(mem, "SELECT count(*) FROM memories WHERE id = ?", memo.id) == [(1,)]  # tombstone

    # Purged purge_after_days (30) after it was forgotten, with its links.
    clock.advance(days=29)
    assert mem.reorbit().purged == 0
    clock.advance(days=1)
    assert mem.reorbit().purged == 1
    assert query(mem, "SELECT count(*) FROM memories WHERE id = ?", memo.id) == [(0,)]
    assert changes(mem, memo.id)[-1] == ("purge", me)
    assert query(
        mem, "SELECT count(*) FROM links WHERE source_id = ? OR target_id = ?", memo.id, memo.id
    ) == [(0,)]
    stats = mem.stats()
    assert (stats.memories, stats.forgotten, stats.links) == (1, 0, 0)
    assert mem.get(keeper.id).zone == Zone.CLOUD  # pinned: idle in Cloud, never forgotten


def test_recall_pulls_a_drifted_memory_inward(mem, clock):
    memo = mem.store("The spare key to the bike shed hangs behind the boiler", importance=0.4)
    mem.store_many(["The printer on floor two jams on thick paper", "Dentist on the 14th"])
    clock.advance(days=25)
    mem.reorbit()
    drifted = mem.get(memo.id).zone
    assert drifted.rank >= Zone.OUTER.rank

    for _ in range(5):
        assert mem.recall("where is the key for the bicycle shed?", k=1)[0].memory.id == memo.id
    assert mem.get(memo.id).recall_count == 0  # batched, not yet written
    report = mem.reorbit()  # flushes the recall log first
    back = mem.get(memo.id)
    assert back.recall_count == 5
    assert back.last_recalled_at == back.last_access_at == clock.now()
    assert back.zone.rank < drifted.rank
    assert report.moved_inward == 1


def test_forgetting_waits_longer_for_more_important_memories(mem, clock):
    importances = [0.0, 0.2, 0.4]
    stored = mem.store_many(
        [{"content": f"Idle note number {i}", "importance": x} for i, x in enumerate(importances)]
    )
    forgotten_on: dict[float, int] = {}
    for day in range(10, 201, 10):
        clock.advance(days=10)
        mem.reorbit()
        for x, memo in zip(importances, stored, strict=True):
            if x not in forgotten_on:
                try:
                    mem.get(memo.id)
                except NotFoundError:
                    forgotten_on[x] = day
    assert list(forgotten_on) == importances  # in this order: the least important first
    for x, day in forgotten_on.items():
        limit = forget_after_days(x, mem.settings)
        assert limit <= day < limit + 10


def test_same_idle_time_forgets_low_importance_only(mem, clock):
    low, high = mem.store_many(
        [
            {"content": "A passing remark about the weather", "importance": 0.0},
            {"content": "The production database master password is in the vault", "importance": 0.5},
        ]
    )
    clock.advance(days=40)
    report = mem.reorbit()
    assert report.forgotten == 1
    with pytest.raises(NotFoundError):
        mem.get(low.id)
    assert mem.get(high.id).importance == 0.5

    clock.advance(days=200)  # 240 idle days: past 30 * (1 + 5 * 0.5) = 105
    assert mem.reorbit().forgotten == 1
    with pytest.raises(NotFoundError):
        mem.get(high.id)


def test_pinned_memory_is_never_forgotten(mem, clock):
    pinned, twin = mem.store_many(
        [
            {"content": "Never forget: the cat is called Miso", "importance": 0.0, "pinned": True},
            {"content": "Easily forgotten: the cat sleeps a lot", "importance": 0.0},
        ]
    )
    for _ in range(10):
        clock.advance(days=365)
        mem.reorbit()
    kept = mem.get(pinned.id)
    assert kept.zone == Zone.CLOUD
    assert kept.pinned
    assert kept.importance == 0.0
    with pytest.raises(NotFoundError):
        mem.get(twin.id)
    assert mem.stats().memories == 1  # the twin was forgotten, then purged


def test_reorbit_never_overwrites_importance(mem, clock):
    given = [0.0, 0.13, 0.5, 0.77, 1.0]
    stored = mem.store_many([{"content": f"Fact {x}", "importance": x, "pinned": True} for x in given])
    assert len(mem.recall("fact", k=5)) == 5
    for _ in range(6):
        clock.advance(days=20)
        mem.reorbit()
        assert [mem.get(s.id).importance for s in stored] == given


def test_full_zones_cascade_outward(open_memory):
    s = Settings(**LOW_THRESHOLDS, core_capacity=2, inner_capacity=3, outer_capacity=4, belt_capacity=5)
    mem = open_memory(settings=s)
    stored = mem.store_many([{"content": f"Strong memory {i}", "importance": i / 20} for i in range(20)])
    assert {x.zone for x in stored} == {Zone.CORE}  # thresholds alone would keep all in Core

    report = mem.reorbit()
    assert (report.scored, report.moved_inward, report.moved_outward) == (20, 0, 18)
    assert report.zones == zone_counts(core=2, inner=3, outer=4, belt=5, cloud=6)
    strongest_first = [mem.get(x.id).zone for x in reversed(stored)]
    assert strongest_first == (
        [Zone.CORE] * 2 + [Zone.INNER] * 3 + [Zone.OUTER] * 4 + [Zone.BELT] * 5 + [Zone.CLOUD] * 6
    )
    again = mem.reorbit()
    assert (again.moved_inward, again.moved_outward, again.forgotten) == (0, 0, 0)

    # A new strongest memory pushes the weakest of every bounded zone one zone out.
    top = mem.store("The strongest memory of all", importance=1.0)
    report = mem.reorbit()
    assert (report.moved_inward, report.moved_outward) == (0, 4)
    assert report.zones == zone_counts(core=2, inner=3, outer=4, belt=5, cloud=7)
    assert mem.get(top.id).zone == Zone.CORE
    assert mem.get(stored[18].id).zone == Zone.INNER  # was second in Core

    # More room in Core pulls three up from Inner, and the whole cascade follows.
    mem.configure_zones(capacities={"core": 5})
    report = mem.reorbit()
    assert (report.moved_inward, report.moved_outward) == (12, 0)
    assert report.zones == zone_counts(core=5, inner=3, outer=4, belt=5, cloud=4)


def test_zone_configuration_is_per_namespace(open_memory):
    mem = open_memory(settings=Settings(**LOW_THRESHOLDS))
    one_each = {"core": 1, "inner": 1, "outer": 1, "belt": 1}
    mem.configure_zones(capacities=one_each, namespace="tight")
    texts = [f"Shared memory {i}" for i in range(6)]
    for ns in ("tight", "roomy"):
        mem.store_many(texts, namespace=ns)
    tight, roomy = mem.reorbit(namespace="tight"), mem.reorbit(namespace="roomy")
    assert tight.zones == zone_counts(core=1, inner=1, outer=1, belt=1, cloud=2)
    assert roomy.zones == zone_counts(core=6)
    assert mem.zone_policy("roomy").capacities[Zone.CORE] == mem.settings.core_capacity
    assert mem.zone_policy("tight").capacities[Zone.CORE] == 1


def test_configured_thresholds_place_memories(mem):
    mem.configure_zones(thresholds={"core": 0.95, "inner": 0.9, "outer": 0.85, "belt": 0.8})
    memo = mem.store("A memory with the default importance of 0.5")
    assert memo.zone == Zone.CLOUD  # scores 0.55, below every configured threshold
    assert mem.reorbit().zones == zone_counts(cloud=1)


def test_reorbit_context_raises_similar_memories(mem):
    similar, other = mem.store_many(
        [
            {"content": "We are planning a summer holiday trip to Italy", "importance": 0.4},
            {"content": "The quarterly tax report is due at the end of March", "importance": 0.6},
        ]
    )

    def scores() -> tuple[float, float]:
        return mem.get(similar.id).score, mem.get(other.id).score

    mem.reorbit()
    plain = scores()
    assert plain[0] < plain[1]
    mem.reorbit(context="planning our summer holiday in Italy")
    focused = scores()
    assert focused[0] > plain[0]
    assert focused[1] < plain[1]
    assert focused[0] > focused[1]
    mem.reorbit()  # the context lasts one pass only
    assert scores() == pytest.approx(plain)


def test_reorbit_is_set_based_over_thousands(open_memory, clock, tmp_path):
    s = Settings(
        core_threshold=0.5,
        inner_threshold=0.4,
        outer_threshold=0.3,
        belt_threshold=0.2,
        core_capacity=100,
        inner_capacity=400,
        outer_capacity=1000,
        belt_capacity=1500,
    )
    mem = open_memory(embedder=HashEmbedder(), settings=s)
    n = 5000
    mem.store_many(
        [{"content": f"Memory number {i}", "importance": 0.5 + 0.5 * (i % 1000) / 1000} for i in range(n)]
    )
    statements = count_statements(mem)
    report = mem.reorbit()
    assert report.scored == n
    assert report.zones == zone_counts(core=100, inner=400, outer=1000, belt=1500, cloud=2000)
    assert query(
        mem, "SELECT count(*) FROM memories WHERE zone NOT IN ('core', 'inner', 'outer', 'belt', 'cloud')"
    ) == [(0,)]
    # Zones are contiguous runs of scores: every Core memory outscores every Inner one.
    ((core_min,),) = query(mem, "SELECT min(score) FROM memories WHERE zone = 'core'")
    ((inner_max,),) = query(mem, "SELECT max(score) FROM memories WHERE zone = 'inner'")
    assert core_min >= inner_max

    clock.advance(days=1000)
    report = mem.reorbit()
    assert report.forgotten >= 2000
    assert report.zones[Zone.CLOUD] == 0  # everything idle in Cloud went in the same pass
    assert report.forgotten + sum(report.zones.values()) == n
    assert len(statements) < 60, statements  # set-based: not a statement per memory
    assert query(mem, "SELECT count(*) FROM changes WHERE op = 'forget'") == [(report.forgotten,)]


@pytest.mark.parametrize(
    "how",
    [
        "forget",
        pytest.param(
            "reorbit",
        ),
    ],
)
def test_forgotten_text_leaves_the_thread_context(mem, clock, how):
    secret, reply = mem.store_many(
        [
            {"content": "The vault combination is kumquat", "thread": "t", "importance": 0.0},
            {"content": "Noted, thanks.", "thread": "t", "pinned": True},
        ]
    )
    assert "lexical" in mem.recall("kumquat", k=1)[0].via
    if how == "forget":
        mem.forget(secret.id)
    else:
        clock.advance(days=60)
        assert mem.reorbit().forgotten == 1
    hits = {h.memory.id: h.via for h in mem.recall("kumquat")}
    assert secret.id not in hits
    assert "lexical" not in hits.get(reply.id, ())


def test_reorbit_of_an_empty_namespace(mem):
    report = mem.reorbit(namespace="empty")
    assert (report.scored, report.forgotten, report.purged) == (0, 0, 0)
    assert report.zones == zone_counts()
