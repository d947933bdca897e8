"""The public API under generated input, on both backends: every call succeeds or raises a
``StellarError``, and a refused call changes nothing.

Values are drawn to reach the edges the validation layer guards: text with NUL and lone
surrogates, very long and empty text, huge and non-finite numbers, wrong types, nested
metadata, and import documents with any field replaced.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellar_core import StellarError, StellarMemory, ValidationError
from stellar_core.store.schema import changes
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.backends

EXAMPLES = 300  # per test and backend: a few seconds each

texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=20),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "x" * 300, "core", "ops"]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -1, 0, 1, 0.5, 2**31, 2**63]),
)
json_leaf = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
anything = st.one_of(json_values, st.just(object()), st.binary(max_size=8), st.just([1, [2, [3]]]))
maybe = st.one_of(st.none(), anything)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """One public call with drawn arguments ("ID" stands for a live memory's id)."""
    ids = st.one_of(st.just("ID"), texts, anything)
    kind = draw(st.sampled_from(["store", "update", "recall", "get", "forget", "link", "links", "thread",
                                 "configure_zones", "memories", "events"]))  # fmt: skip
    if kind == "store":
        return kind, (draw(st.one_of(texts, anything)),), draw(st.fixed_dictionaries({}, optional={
            "importance": numbers, "pinned": st.one_of(st.booleans(), anything),
            "tags": st.lists(texts, max_size=3),
            "metadata": st.one_of(st.dictionaries(texts, json_values, max_size=3), anything),
            "thread": maybe, "position": st.one_of(st.none(), numbers), "principal": maybe,
            "source": st.one_of(st.none(), st.fixed_dictionaries({"type": texts}, optional={
                "url": maybe, "chunk": numbers, "ingested_at": numbers})),
        }))  # fmt: skip
    if kind == "update":
        return kind, (draw(ids),), draw(st.fixed_dictionaries({}, optional={
            "content": maybe, "importance": numbers, "pinned": maybe,
            "tags": st.one_of(st.none(), st.lists(texts)),
            "metadata": st.one_of(st.dictionaries(texts, json_values, max_size=3), anything),
        }))  # fmt: skip
    if kind == "recall":
        return kind, (draw(st.one_of(texts, anything)),), draw(st.fixed_dictionaries({}, optional={
            "k": numbers, "zones": maybe, "tags": st.one_of(st.none(), st.lists(texts)), "since": numbers,
            "until": numbers, "source_type": maybe, "expand": st.booleans(), "namespace": maybe,
        }))  # fmt: skip
    if kind == "link":
        return kind, (draw(ids), draw(ids)), draw(st.fixed_dictionaries({}, optional={
            "kind": st.one_of(texts, anything), "weight": numbers}))  # fmt: skip
    if kind == "configure_zones":
        zone_maps = st.one_of(
            anything, st.dictionaries(st.one_of(st.sampled_from(["core", "belt"]), texts), numbers)
        )
        return kind, (), {"thresholds": draw(zone_maps), "capacities": draw(zone_maps)}
    if kind in ("memories", "events"):
        key = "offset" if kind == "memories" else "after"
        return kind, (), {"limit": draw(numbers), key: draw(numbers)}
    return kind, (draw(ids),), {}


def snapshot(mem: StellarMemory) -> tuple[str, int]:
    with mem.engine.db.read() as conn:
        logged = int(conn.execute(sa.select(sa.func.count()).select_from(changes)).scalar_one())
    return json.dumps([mem.export(namespace=ns) for ns in mem.namespaces()], sort_keys=True), logged


@pytest.fixture
def fuzzed(open_memory) -> StellarMemory:
    mem = open_memory(embedder=HashEmbedder())
    mem.store_many([{"content": "the backup window is 02:00 UTC", "thread": "t", "tags": ["ops"]}, "Ines"])
    return mem


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=calls())
def test_every_public_call_succeeds_or_is_refused_cleanly(fuzzed: StellarMemory, call) -> None:
    method, args, kwargs = call
    target = fuzzed.store("the fuzzer's target memory", namespace="default")
    args = tuple(target.id if a == "ID" else a for a in args)
    before = snapshot(fuzzed)
    try:
        getattr(fuzzed, method)(*args, **kwargs)
    except StellarError:
        assert snapshot(fuzzed) == before, f"a refused {method} changed the memory"


ALSO = ["", "links", "format", "memories"]  # what else is damaged
FIELDS = ["id", "content", "content_hash", "importance", "pinned", "recall_count", "created_at", "updated_at",
          "last_recalled_at", "last_access_at", "zone", "score", "tags", "metadata", "source", "thread",
          "position", "encrypted", "key_id", "origin_agent", "hlc", "vector_clock", "deleted_at"]  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(FIELDS), value=anything, also=st.sampled_from(["", "links", "format", "memories"])
)
def test_any_damaged_import_is_refused_whole_or_taken_whole(
    fuzzed: StellarMemory, field, value, also
) -> None:
    document = fuzzed.export()
    document["memories"][0][field] = value
    if also == "links":
        document["links"] = [{"source_id": value, "target_id": value, "kind": value, "weight": 1.0}]
    elif also:  # the envelope damaged too
        document[also] = value
    before = snapshot(fuzzed)
    try:
        report = fuzzed.import_(document, namespace="imported")
    except ValidationError:
        assert snapshot(fuzzed) == before
    else:  # taken: the database still opens and exports
        assert report.imported <= len(document["memories"])
        assert fuzzed.export(namespace="imported")["namespace"] == "imported"
