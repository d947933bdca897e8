"""Every statement on the hot paths uses an index: asked of the databases themselves.

The statements are the project's own, captured as they run (store, store_many, update,
forget, link, get, recall with each filter, thread, reorbit, forget_idle, and the
dashboard's stats, memories and events) on a populated database; each is explained on the
connection that runs it, inside its transaction (so the reorbit's temporary tables are
there), with its real parameters.

- SQLite: ``EXPLAIN QUERY PLAN``; a ``SCAN`` of a watched table is a full scan (a
  ``SEARCH`` uses a key or an index). A Boolean-typed construct once rendered as
  ``x IN (...) = 1`` turned every lookup by seq into a scan (recall 4 -> 76 ms at 100k).
- PostgreSQL: ``EXPLAIN (FORMAT JSON)`` with sequential scans disabled, so the planner
  takes any index that can serve; a ``Seq Scan`` left on a watched table means none can.

Deterministic: it reads plans, it times nothing.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from stellar_core import StellarMemory

pytestmark = pytest.mark.backends

WATCHED = ("memories", "memory_vectors", "memory_tags", "changes")
# Statements that read tables (an INSERT ... VALUES reads none).
EXPLAINABLE = re.compile(r"^\s*(SELECT|WITH|UPDATE|DELETE|INSERT\b.*\bSELECT)\b", re.IGNORECASE | re.DOTALL)


@dataclass
class Plans:
    """Statements seen while capturing, with what the database planned for each."""

    full_scans: list[tuple[str, str]] = field(default_factory=list)  # (statement, plan line)
    explained: int = 0
    statements: list[str] = field(default_factory=list)
    capturing: bool = False


@contextmanager
def captured(mem: StellarMemory, watched: tuple[str, ...] = WATCHED) -> Iterator[Plans]:
    """Explain every statement ``mem`` runs while the block runs; a full scan of a table in
    ``watched`` is noted."""
    plans = Plans()
    engine = mem.engine.db.engine
    postgres = engine.dialect.name == "postgresql"

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not plans.capturing or not EXPLAINABLE.match(statement):
            return
        # executemany: explain with the first row's parameters
        params = parameters[0] if many and isinstance(parameters, list) else parameters
        raw = conn.connection.dbapi_connection.cursor()
        try:
            if postgres:
                lines = _postgres_plan(raw, statement, params)
            else:
                raw.execute("EXPLAIN QUERY PLAN " + statement, params)
                lines = [row[3] for row in raw.fetchall()]
        finally:
            raw.close()
        plans.explained += 1
        plans.statements.append(statement)
        for line in lines:
            if _full_scan(line, watched):
                plans.full_scans.append((statement, line))

    sa.event.listen(engine, "before_cursor_execute", explain)
    plans.capturing = True
    try:
        yield plans
    finally:
        plans.capturing = False
        sa.event.remove(engine, "before_cursor_execute", explain)


def _postgres_plan(raw: Any, statement: str, params: Any) -> list[str]:
    raw.execute("SET enable_seqscan = off")
    try:
        raw.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        doc = raw.fetchone()[0]
    finally:
        raw.execute("RESET enable_seqscan")
    plan = doc if isinstance(doc, list) else json.loads(doc)
    lines: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        lines.append(f"{node['Node Type']} on {node.get('Relation Name', '-')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return lines


def _full_scan(line: str, watched: tuple[str, ...] = WATCHED) -> bool:
    for table in watched:
        # SQLite: "SCAN memories" / "SCAN memories USING COVERING INDEX ..." (a whole index
        # walked is a scan too); an alias ("SCAN m") is named by its table in our SQL.
        if re.match(rf"^SCAN {table}\b", line):
            return True
        if line == f"Seq Scan on {table}":
            return True
    return False


def populate(mem: StellarMemory) -> list[str]:
    """Two namespaces, threads, tags, links and tombstones; planner statistics refreshed."""
    items = []
    for i in range(1_500):
        item: dict[str, Any] = {
            "content": f"note {i} about subject {i % 37} and the rota of week {i % 52}",
            "importance": (i % 10) / 10,
            "tags": [f"t{i % 7}"] + (["ops"] if i % 5 == 0 else []),
        }
        if i % 2:
            item["thread"] = f"conversation-{i % 40}"
        items.append(item)
    ids = [x.id for x in mem.store_many(items)]
    mem.store_many([f"other namespace fact {i}" for i in range(300)], namespace="elsewhere")
    for a, b in zip(ids[:50], ids[50:100], strict=True):
        mem.link(a, b, kind="supports")
    for x in ids[100:130]:
        mem.forget(x)
    with mem.engine.db.write() as conn:
        mem.engine.db.dialect.refresh_statistics(conn)
    return ids


def test_hot_statements_use_indexes(open_memory, clock) -> None:
    mem = open_memory()
    ids = populate(mem)
    mem.recall("warm the vector index up", k=5)

    with captured(mem) as plans:
        one = mem.store("the backup window is 02:00 UTC", tags=["ops"], thread="conversation-3")
        mem.store_many([{"content": f"batch fact {i}", "thread": "conversation-4"} for i in range(20)])
        mem.update(one.id, content="the backup window is 03:00 UTC", tags=["ops", "backup"])
        mem.update(ids[200], importance=0.9, pinned=True)
        mem.link(one.id, ids[201], kind="related")
        mem.get(ids[202])
        mem.thread("conversation-5")
        mem.links(ids[0])
        for kwargs in ({}, {"tags": ["ops"]}, {"zones": ["inner", "outer"]}, {"expand": True},
                       {"since": 0, "until": 2e9, "source_type": "file"}):  # fmt: skip
            mem.recall("who owns the rota of week 12?", k=5, **kwargs)
        mem.flush()
        mem.forget(ids[203])
        clock.advance(days=400)
        mem.reorbit()
        mem.forget_idle()
        mem.stats()
        mem.memories(zones=["cloud"], limit=10)
        mem.events(after=10, limit=10)

    assert plans.explained > 40  # the capture saw the paths, not nothing
    assert not plans.full_scans, "\n".join(f"{line}\n    in: {sql[:300]}" for sql, line in plans.full_scans)

    # Graph: recall's spreading activation (a query per hop) follows the links' keys, never
    # reads every link; the graph's bulk read finds the namespace's memories by its index.
    live_ids = sorted(x.id for x in mem.memories(limit=2000))
    with mem.engine.writing("link") as tx:  # a chain through the namespace: expansion walks hops
        for a, b in itertools.pairwise(live_ids):
            tx.link(a, b, "next", 1.0)
    with mem.engine.db.write() as conn:
        mem.engine.db.dialect.refresh_statistics(conn)
    with captured(mem, (*WATCHED, "links")) as plans:
        mem.recall("who owns the rota of week 12?", k=8, expand=True)
    hops = [sql for sql in plans.statements if "JOIN memories AS far" in sql]
    assert len(hops) >= 2  # the expansion walked more than one hop
    assert not plans.full_scans, "\n".join(f"{line}\n    in: {sql[:300]}" for sql, line in plans.full_scans)
    with captured(mem) as plans:
        mem.graph.load()
        mem.graph.centrality()
    assert plans.explained >= 6
    assert not plans.full_scans, "\n".join(f"{line}\n    in: {sql[:300]}" for sql, line in plans.full_scans)
