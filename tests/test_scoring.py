"""The memory function: Python and SQL agree, half-lives in days, zone cascade, threshold checks."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pydantic
import pytest
import sqlalchemy as sa

from stellar_core import Memory, Settings, StellarMemory, ValidationError, Zone
from stellar_core.clock import DAY
from stellar_core.scoring import (
    ZonePolicy,
    forget_after_days,
    half_life_days,
    memory_score,
    score_sql,
)
from stellar_core.store.records import m
from stellar_core.store.schema import memories
from tests.helpers import import_memories

CUSTOM = Settings(
    weight_recall=0.5,
    weight_freshness=0.2,
    weight_importance=0.3,
    recall_saturation=5,
    half_life_days=2.0,
    half_life_importance_factor=1.0,
)

# (importance, recall count, days since last access before "now"; negative: in the future)
GRID = [
    (0.0, 0, 0.0),
    (0.0, 0, 3.0),
    (0.1, 1, 10.0),
    (0.3, 2, 0.5),
    (0.5, 5, 7.0),
    (0.7, 19, 20.0),
    (0.9, 20, 1.0),
    (1.0, 21, 60.0),
    (1.0, 500, 365.0),
    (0.4, 3, -2.0),
]


def planted(mem: StellarMemory, now: float) -> list[Memory]:
    """Memories with the GRID's importances, recall counts and last-access times, via restore()."""
    out = []
    for i, (importance, recalls, idle) in enumerate(GRID):
        text = f"grid memory number {i}"
        at = now - idle * DAY
        out.append(
            Memory(
                id=f"grid{i:02d}",
                namespace=mem.namespace,
                content=text,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                importance=importance,
                pinned=True,
                recall_count=recalls,
                created_at=at - DAY,
                updated_at=at,
                last_recalled_at=at if recalls else None,
                last_access_at=at,
                zone=Zone.OUTER,
                score=0.0,
            )
        )
    assert import_memories(mem, out).imported == len(GRID)
    return out


def expected(x: Memory, now: float, s: Settings, context: float | None = None) -> float:
    return memory_score(x.recall_count, (now - x.last_access_at) / DAY, x.importance, s, context)


@pytest.mark.parametrize("settings", [Settings(), CUSTOM], ids=["default", "custom"])
def test_reorbit_stores_the_python_score(open_memory, clock, settings: Settings) -> None:
    mem = open_memory(settings=settings)
    grid = planted(mem, clock.advance(days=1))
    now = clock.advance(days=3)
    report = mem.reorbit()
    assert report.scored == len(GRID)
    policy = mem.zone_policy()
    for x in grid:
        got = mem.get(x.id)
        assert got.score == pytest.approx(expected(x, now, settings), abs=1e-9), x.id
        assert 0.0 <= got.score <= 1.0
        assert got.zone == policy.zone_for(got.score)  # default capacities are not reached


@pytest.mark.parametrize("settings", [Settings(), CUSTOM], ids=["default", "custom"])
def test_score_sql_equals_memory_score_at_any_time(open_memory, clock, settings: Settings) -> None:
    mem = open_memory(settings=settings)
    start = clock.now()
    grid = {x.id: x for x in planted(mem, start)}
    for days in (0.0, 0.125, 1.0, 6.5, 30.0, 400.0):
        now = start + days * DAY
        with mem.engine.db.read() as conn:
            rows = conn.execute(sa.select(m.id, score_sql(memories, now, settings))).all()
        assert len(rows) == len(GRID)
        for mid, score in rows:
            assert score == pytest.approx(expected(grid[mid], now, settings), abs=1e-9), (mid, days)


def test_reorbit_with_context_matches_memory_score(open_memory, clock, embedder) -> None:
    mem = open_memory()
    grid = planted(mem, clock.now())
    now = clock.advance(days=2)
    context = "grid memory number 3"
    mem.reorbit(context=context)
    ctx = embedder.embed([context])[0]
    vectors = embedder.embed([x.content for x in grid])
    for x, vec in zip(grid, vectors, strict=True):
        sim = max(0.0, float(np.dot(ctx, vec)))
        assert mem.get(x.id).score == pytest.approx(expected(x, now, mem.settings, sim), abs=1e-6)
    assert mem.get("grid03").score > expected(grid[3], now, mem.settings, 0.0)


def test_recalls_feed_the_score(mem: StellarMemory, clock) -> None:
    a, b = mem.store_many(
        [
            {"content": "the launch code is in the red binder", "importance": 0.2},
            {"content": "lunch is served at noon in the cafeteria", "importance": 0.8},
        ]
    )
    clock.advance(days=1)
    for _ in range(3):
        assert mem.recall("where is the launch code?", k=1)[0].memory.id == a.id
        clock.advance(days=1)
    now = clock.advance(days=2)
    mem.reorbit()  # flushes the recall statistics first
    got_a, got_b = mem.get(a.id), mem.get(b.id)
    assert got_a.recall_count == 3 and got_b.recall_count == 0
    idle_a = (now - got_a.last_access_at) / DAY
    assert idle_a == pytest.approx(3.0)
    assert got_a.score == pytest.approx(memory_score(3, idle_a, 0.2, mem.settings), abs=1e-9)
    assert got_b.score == pytest.approx(memory_score(0, 6.0, 0.8, mem.settings), abs=1e-9)


def test_store_time_score_is_the_fresh_score(mem: StellarMemory) -> None:
    for importance in (0.0, 0.5, 1.0):
        x = mem.store(f"fresh at importance {importance}", importance=importance)
        assert x.score == pytest.approx(memory_score(0, 0.0, importance, mem.settings), abs=1e-12)
        assert x.zone == mem.zone_policy().zone_for(x.score)


# --- half-life ------------------------------------------------------------------------------------


@pytest.mark.parametrize("low, high", [(0.0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.0)])
def test_half_life_and_idle_limit_grow_with_importance(low: float, high: float) -> None:
    s = Settings()
    assert half_life_days(low, s) < half_life_days(high, s)
    assert forget_after_days(low, s) < forget_after_days(high, s)


@pytest.mark.parametrize("importance", [0.0, 0.3, 1.0])
def test_freshness_halves_after_one_half_life(importance: float) -> None:
    s = Settings(weight_recall=0.0, weight_importance=0.0, weight_freshness=1.0)
    hl = half_life_days(importance, s)
    assert memory_score(0, 0.0, importance, s) == pytest.approx(1.0)
    assert memory_score(0, hl, importance, s) == pytest.approx(0.5)
    assert memory_score(0, 2 * hl, importance, s) == pytest.approx(0.25)
    assert memory_score(0, -5.0, importance, s) == pytest.approx(1.0)  # clock skew: never above fresh


def test_half_life_is_in_days_not_hours() -> None:
    s = Settings(weight_recall=0.0, weight_importance=0.0, weight_freshness=1.0)
    assert half_life_days(0.0, s) == 7.0
    assert half_life_days(1.0, s) == 35.0
    assert memory_score(0, 3 / 24, 0.0, s) > 0.98  # three hours idle barely matters


@pytest.mark.parametrize(
    "recalls, idle, importance",
    [(0, 0.0, 0.0), (0, 100.0, 0.0), (5, 2.0, 0.5), (10**6, 0.0, 1.0), (1, 10**4, 1.0)],
)
def test_memory_score_is_bounded_and_monotonic(recalls: int, idle: float, importance: float) -> None:
    s = Settings()
    score = memory_score(recalls, idle, importance, s)
    assert 0.0 <= score <= 1.0
    assert memory_score(recalls + 1, idle, importance, s) >= score
    assert memory_score(recalls, idle + 1.0, importance, s) <= score
    assert memory_score(recalls, idle, min(1.0, importance + 0.1), s) >= score
    assert memory_score(recalls, idle, importance, s, context=1.0) >= memory_score(
        recalls, idle, importance, s, context=0.0
    )


def test_recall_frequency_saturates() -> None:
    s = Settings(weight_freshness=0.0, weight_importance=0.0, weight_recall=1.0, recall_saturation=20)
    assert memory_score(0, 0.0, 0.0, s) == 0.0
    assert memory_score(20, 0.0, 0.0, s) == pytest.approx(1.0)
    assert memory_score(1000, 0.0, 0.0, s) == 1.0
    assert memory_score(3, 0.0, 0.0, s) == pytest.approx(math.log(4) / math.log(21))


# --- zone cascade ---------------------------------------------------------------------------------

CAPS = {Zone.CORE: 2, Zone.INNER: 3, Zone.OUTER: 4, Zone.BELT: 5}
THRESHOLDS = {Zone.CORE: 0.7, Zone.INNER: 0.5, Zone.OUTER: 0.3, Zone.BELT: 0.18}


@pytest.mark.parametrize(
    "at_or_above, caps, ends",
    [
        ((0, 0, 0, 0), CAPS, [0, 0, 0, 0]),  # nothing reaches the Belt: all in Cloud
        ((10, 10, 10, 10), CAPS, [2, 5, 9, 10]),  # all excellent: fill from the inside
        ((20, 20, 20, 20), CAPS, [2, 5, 9, 14]),  # more than fits: six fall into Cloud
        ((3, 3, 3, 3), CAPS, [2, 3, 3, 3]),  # one Core-worthy memory overflows into Inner
        ((1, 1, 6, 6), CAPS, [1, 1, 5, 6]),  # thresholds, not capacities, decide
        ((0, 0, 0, 7), CAPS, [0, 0, 0, 5]),  # a full Belt spills into Cloud
        ((0, 4, 4, 4), CAPS, [0, 3, 4, 4]),
        ((5, 5, 5, 5), {**CAPS, Zone.CORE: 0}, [0, 3, 5, 5]),  # a zero-capacity Core
        ((9, 9, 9, 9), dict.fromkeys(CAPS, 0), [0, 0, 0, 0]),  # everything to Cloud
    ],
)
def test_rank_ends_cascade(at_or_above, caps, ends) -> None:
    policy = ZonePolicy(THRESHOLDS, caps)
    got = policy.rank_ends(
        dict(zip((Zone.CORE, Zone.INNER, Zone.OUTER, Zone.BELT), at_or_above, strict=True))
    )
    assert got == ends
    assert got == sorted(got)  # contiguous runs of ranks


@pytest.mark.parametrize(
    "score, zone",
    [
        (1.0, Zone.CORE),
        (0.7, Zone.CORE),
        (0.69, Zone.INNER),
        (0.5, Zone.INNER),
        (0.3, Zone.OUTER),
        (0.18, Zone.BELT),
        (0.1799, Zone.CLOUD),
        (0.0, Zone.CLOUD),
    ],
)
def test_zone_for_thresholds(score: float, zone: Zone) -> None:
    assert ZonePolicy(THRESHOLDS, CAPS).zone_for(score) == zone


def test_reorbit_cascades_overflow_outwards(mem: StellarMemory, clock) -> None:
    mem.configure_zones(capacities={"core": 1, "inner": 1, "outer": 1, "belt": 1})
    items = [{"content": f"excellent memory {i}", "importance": 1.0 - i / 100} for i in range(6)]
    stored = mem.store_many(items)
    report = mem.reorbit()
    assert report.zones == {Zone.CORE: 1, Zone.INNER: 1, Zone.OUTER: 1, Zone.BELT: 1, Zone.CLOUD: 2}
    zones = [mem.get(x.id).zone for x in stored]  # stored best first
    assert zones == [Zone.CORE, Zone.INNER, Zone.OUTER, Zone.BELT, Zone.CLOUD, Zone.CLOUD]
    assert mem.stats().zones == report.zones


# --- threshold validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"core_threshold": 0.5, "inner_threshold": 0.5},
        {"inner_threshold": 0.8},
        {"outer_threshold": 0.6},
        {"outer_threshold": 0.1},
        {"belt_threshold": 0.0},
        {"belt_threshold": -0.1},
        {"core_threshold": 1.5},
        {
            "core_threshold": 0.2,
            "inner_threshold": 0.3,
            "outer_threshold": 0.4,
            "belt_threshold": 0.5,
        },
        {"weight_recall": 0.0, "weight_freshness": 0.0, "weight_importance": 0.0},
    ],
)
def test_settings_reject_thresholds_that_do_not_fall(overrides) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"core_threshold": 1.0},
        {
            "core_threshold": 0.9,
            "inner_threshold": 0.6,
            "outer_threshold": 0.2,
            "belt_threshold": 0.01,
        },
    ],
)
def test_settings_accept_falling_thresholds(overrides) -> None:
    s = Settings(**overrides)
    policy = ZonePolicy.from_settings(s)
    th = [policy.thresholds[z] for z in (Zone.CORE, Zone.INNER, Zone.OUTER, Zone.BELT)]
    assert th == sorted(th, reverse=True) and len(set(th)) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thresholds": {"core": 0.4}},  # below inner's default 0.5
        {"thresholds": {"belt": 0.0}},
        {"thresholds": {"core": 1.2}},
        {"thresholds": {"inner": 0.3, "outer": 0.3}},
        {"thresholds": {"mars": 0.9}},
        {"capacities": {"core": -1}},
        {"capacities": {"pluto": 3}},
    ],
)
def test_configure_zones_rejects_bad_policies(mem: StellarMemory, kwargs) -> None:
    before = mem.zone_policy()
    with pytest.raises(ValidationError):
        mem.configure_zones(**kwargs)
    assert mem.zone_policy() == before


def test_configure_zones_is_per_namespace(mem: StellarMemory) -> None:
    policy = mem.configure_zones(thresholds={"core": 0.9}, capacities={"core": 5}, namespace="a")
    assert policy.thresholds[Zone.CORE] == 0.9 and policy.capacities[Zone.CORE] == 5
    assert mem.zone_policy("a") == policy
    assert mem.zone_policy("b") == ZonePolicy.from_settings(mem.settings)
