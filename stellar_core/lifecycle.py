"""Reorbit, forgetting and purging of one namespace, as set-based SQL.

One pass: rescore every live memory, place it in its zone (thresholds, then capacities
cascading outwards), forget what has idled in Cloud past its importance-dependent limit
(never pinned ones), and purge tombstones older than the retention period.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from stellar_core.clock import DAY, bump
from stellar_core.models import Op, ReorbitReport, Zone
from stellar_core.scoring import BOUNDED, ZonePolicy, forget_after_days, score_sql
from stellar_core.settings import Settings
from stellar_core.store import changelog, edges, fulltext
from stellar_core.store.dialect import Dialect
from stellar_core.store.records import live, m
from stellar_core.store.schema import links, memories
from stellar_core.writes import Transaction


def reorbit(tx: Transaction, policy: ZonePolicy, context: Mapping[int, float] | None = None) -> ReorbitReport:
    """Rescore, rezone, forget and purge the transaction's namespace. ``context``: each
    memory's similarity to a context, by seq (a term of the score)."""
    started = time.perf_counter()
    conn, namespace = tx.conn, tx.namespace
    ctx_col = _context_column(conn, context) if context is not None else None
    orbit = _orbit_table(conn)
    conn.execute(
        orbit.insert().from_select(
            ["seq", "score", "zone"],
            sa.select(m.seq, score_sql(memories, tx.now, tx.settings, ctx_col), m.zone).where(
                live(namespace)
            ),
        )
    )
    scored = int(conn.execute(sa.select(sa.func.count()).select_from(orbit)).scalar_one())
    # Nothing analyses a temporary table: without statistics SQLite takes it for a big one and
    # writes the scores back by scanning every namespace's memories instead of the pass's rows.
    conn.exec_driver_sql(f"ANALYZE {orbit.name}")
    inward, outward = _rezone(conn, orbit, policy)
    # Each row is written once, with its new score and zone.
    o = orbit.c
    conn.execute(memories.update().where(m.seq == o.seq).values(score=o.score, zone=o.new_zone))
    orbit.drop(conn)
    forgotten, purged = _forget(tx), _purge(tx)
    zones = dict.fromkeys(Zone, 0)
    for zone, count in conn.execute(
        sa.select(m.zone, sa.func.count()).where(live(namespace)).group_by(m.zone)
    ):
        zones[Zone(zone)] = count
    tx.reshaped = True  # every score and zone moved: every cached copy is out of date
    return ReorbitReport(
        namespace, scored, inward, outward, forgotten, purged, zones, time.perf_counter() - started
    )


def forget_idle(tx: Transaction) -> tuple[int, int]:
    """Forget idle Cloud memories and purge old tombstones, without rescoring: (forgotten, purged).

    Zones are as the last reorbit left them, so this is the cheap pass a daily schedule runs.
    """
    forgotten, purged = _forget(tx), _purge(tx)
    tx.reshaped = tx.reshaped or forgotten > 0
    return forgotten, purged


def _temporary(conn: sa.Connection, name: str, *columns: sa.Column[Any]) -> sa.Table:
    """A fresh temporary table on this connection."""
    table = sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    table.drop(conn, checkfirst=True)
    table.create(conn)
    return table


def _orbit_table(conn: sa.Connection) -> sa.Table:
    """Work table of one pass: each live memory's new score, old zone and new zone."""
    return _temporary(
        conn,
        "reorbit_orbit",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("zone", sa.String(8), nullable=False),
        sa.Column("new_zone", sa.String(8)),
    )


def _context_column(conn: sa.Connection, context: Mapping[int, float]) -> sa.ColumnElement[float]:
    """Context similarities in a temporary table, as a correlated column (0 when absent)."""
    tmp = _temporary(
        conn,
        "reorbit_context",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("sim", sa.Float, nullable=False),
    )
    if context:
        conn.execute(tmp.insert(), [{"seq": k, "sim": max(0.0, v)} for k, v in context.items()])
    sub = sa.select(tmp.c.sim).where(tmp.c.seq == m.seq).scalar_subquery()
    return sa.func.coalesce(sub, 0.0)


def _rezone(conn: sa.Connection, orbit: sa.Table, policy: ZonePolicy) -> tuple[int, int]:
    """Set each row's new zone by rank; returns how many memories move inward and outward."""
    o = orbit.c
    counts = conn.execute(
        sa.select(*(sa.func.sum(sa.case((o.score >= policy.thresholds[z], 1), else_=0)) for z in BOUNDED))
    ).one()
    ends = policy.rank_ends({z: int(c or 0) for z, c in zip(BOUNDED, counts, strict=True)})
    ranked = sa.select(
        o.seq.label("seq"), sa.func.row_number().over(order_by=(o.score.desc(), o.seq.desc())).label("r")
    ).subquery("ranked")
    new_zone = sa.case(
        *((ranked.c.r <= end, zone.value) for zone, end in zip(BOUNDED, ends, strict=True)),
        else_=Zone.CLOUD.value,
    )
    conn.execute(orbit.update().where(o.seq == ranked.c.seq).values(new_zone=new_zone))
    rank = {z.value: z.rank for z in Zone}
    old, new = sa.case(rank, value=o.zone), sa.case(rank, value=o.new_zone)
    moves = conn.execute(
        sa.select(
            sa.func.sum(sa.case((new < old, 1), else_=0)), sa.func.sum(sa.case((new > old, 1), else_=0))
        )
    ).one()
    return int(moves[0] or 0), int(moves[1] or 0)


def _forget(tx: Transaction) -> int:
    conn, dialect, namespace, s, now, agent = _unpack(tx)
    idle_limit = DAY * forget_after_days(m.importance, s)
    rows = conn.execute(
        memories.update()
        .where(
            live(namespace),
            m.zone == Zone.CLOUD.value,
            m.pinned.is_(False),
            (now - m.last_access_at) >= idle_limit,
        )
        .values(deleted_at=now)
        .returning(m.seq, m.id, m.vector_clock, m.thread, m.position)
    ).all()
    if not rows:
        return 0
    stamps = [(seq, mid, tx.stamp(), bump(vc or {}, agent)) for seq, mid, vc, _, _ in rows]
    conn.execute(
        memories.update()
        .where(m.seq == sa.bindparam("b_seq"))
        .values(hlc=sa.bindparam("b_hlc"), vector_clock=sa.bindparam("b_vc")),
        [{"b_seq": seq, "b_hlc": h, "b_vc": vc} for seq, _, h, vc in stamps],
    )
    dialect.text_index_drop(conn, namespace, [r[0] for r in rows])
    # Their words must also leave the thread context of their neighbours.
    places = [(t, p) for *_, t, p in rows if t is not None and p is not None]
    around = fulltext.neighbours(conn, namespace, places, s.thread_context_window)
    fulltext.reindex(conn, dialect, namespace, around, s.thread_context_window)
    idle = {"reason": "idle"}
    events = [
        changelog.event((namespace, mid), Op.FORGET, agent, h, now, idle, vc) for _, mid, h, vc in stamps
    ]
    changelog.record(conn, dialect, events)
    return len(rows)


def _purge(tx: Transaction) -> int:
    """Delete the tombstones past the retention period for good, with whatever else holds
    their text: the summaries made from them, their events' payloads (the events stay), what
    the full-text index keeps of deleted rows (decision 0029)."""
    conn, dialect, namespace, s, now, agent = _unpack(tx)
    due = (m.namespace == namespace) & (m.deleted_at <= now - s.purge_after_days * DAY)
    ids = list(conn.execute(sa.select(m.id).where(m.deleted_at.is_not(None), due)).scalars())
    if not ids:
        return 0
    summaries: dict[str, bool] = {}  # made from them: id -> forgotten already
    for i in range(0, len(ids), 900):
        summaries.update(edges.summaries_of(conn, namespace, ids[i : i + 900]))
    for summary_id in sorted(summaries.keys() - set(ids)):
        if not summaries[summary_id]:  # the summarise job has not replaced it yet
            tx.forget(summary_id)
        ids.append(summary_id)
    texts = changelog.scrub(conn, namespace, ids)
    rows: list[sa.Row[Any]] = []
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        gone = memories.delete().where(m.id.in_(chunk)).returning(m.id, m.vector_clock, m.content)
        rows += conn.execute(gone).all()
        conn.execute(links.delete().where(sa.or_(links.c.source_id.in_(chunk), links.c.target_id.in_(chunk))))
    dialect.text_index_scrub(conn, namespace, list(dict.fromkeys(texts + [r[2] for r in rows])))
    events = [changelog.event((namespace, mid), Op.PURGE, agent, tx.stamp(), now, {}, bump(vc or {}, agent))
              for mid, vc, _ in rows]  # fmt: skip
    changelog.record(conn, dialect, events)
    tx.touched.update(ids)
    tx.purged += len(rows)
    return len(rows)


def _unpack(tx: Transaction) -> tuple[sa.Connection, Dialect, str, Settings, float, str]:
    return tx.conn, tx.dialect, tx.namespace, tx.settings, tx.now, tx.principal.id
