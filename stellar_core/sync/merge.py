"""The CRDT merge (decision 0030): change events of other replicas applied to this database.

A memory's replicated state, and how two states join, so that any order of delivery, with
duplicates, ends in the same state on every replica:

- **existence**: made once, by its store or import event (ids are unique UUIDv7s). Two
  memories with the same content in one thread: the one with the smaller id stays, the other
  becomes a tombstone (on every replica, whichever arrived first).
- **fields** (content, importance, pinned, metadata, tags): last-writer-wins registers, each
  with the stamp ``"<hlc> <agent>"`` of its last write (``memories.stamps``; absent: as created).
- **forget**: a tombstone, and it wins over every edit, concurrent or later (a forgotten memory
  does not come back because someone edited it); ``deleted_at`` is the earliest forget's.
- **recall statistics**: a count per replica that only grows (``recall_counts``); a replica's
  ``recall_count`` is its own count plus the others'. No increment is lost or counted twice.
- **links**: a set of (source, target, kind) that only grows, each weight a last-writer-wins
  register (``links.stamp``).

Edits whose vector clocks are concurrent (neither agent had seen the other's) are merged the
same way and also recorded in ``conflicts`` with both versions, until someone resolves them.
An event whose memory has not arrived yet waits in ``sync_held`` and is applied when it does;
one for a memory purged here is dropped (the purge came after its forget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from stellar_core.clock import dominated, merged
from stellar_core.models import Link, Memory, Op
from stellar_core.scoring import memory_score
from stellar_core.store import changelog, edges, fulltext
from stellar_core.store.records import REGISTERS, m, parse_stamp, put_tags, stamp_of
from stellar_core.store.schema import (
    changes,
    conflicts,
    links,
    memories,
    memory_tags,
    memory_vectors,
    recall_counts,
    sync_held,
)
from stellar_core.sync.wire import Envelope, body_of, envelope_of
from stellar_core.writes import Transaction


@dataclass
class Applied:
    """What applying a batch did."""

    applied: int = 0
    duplicates: int = 0  # delivered before (at least once delivery)
    waiting: int = 0  # for their memory, held
    refused: int = 0  # bad input, held for inspection
    conflicts: int = 0
    own: int = 0  # this replica's own events, read back from the stream (nothing to do)

    @property
    def received(self) -> int:
        """Events read, whatever became of them (0: the streams had nothing for it)."""
        return self.applied + self.duplicates + self.waiting + self.refused + self.own

    def __iadd__(self, other: Applied) -> Applied:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


@dataclass(frozen=True)
class Prepared:
    """What an event needs that must not be computed inside the transaction: the vector of
    its content, and an encrypted content's keyed search words."""

    vector: np.ndarray
    search_text: str | None = None


Row = SimpleNamespace  # a memory's row as the merge reads and changes it

# Built once: a small batch (one event, applied as it happens) runs each of them, and building
# a statement costs more than SQLite running it.
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_NS: sa.BindParameter[str] = sa.bindparam("ns")
_APPLIED = sa.select(changes.c.origin).where(changes.c.origin.in_(_IDS))
_HELD = sa.select(sync_held.c.origin).where(sync_held.c.origin.in_(_IDS))
_PURGED = sa.select(changes.c.memory_id).where(
    changes.c.namespace == _NS, changes.c.memory_id.in_(_IDS), changes.c.op == Op.PURGE.value
)
_WAITING = (
    sa.select(sync_held.c.origin, sync_held.c.event)
    .where(sync_held.c.namespace == _NS, sync_held.c.awaits.in_(_IDS))
    .order_by(sync_held.c.held_at)
)

_ROW = sa.select(
    m.seq, m.id, m.deleted_at, m.vector_clock, m.hlc, m.stamps, m.thread, m.position, m.content,
    m.content_hash, m.importance, m.pinned, m.meta, m.updated_at, m.created_at, m.last_recalled_at,
    m.last_access_at, m.recall_count,
)  # fmt: skip
_ROWS = _ROW.where(m.namespace == _NS, m.id.in_(_IDS)).with_for_update()


class Merge:
    """Applies events inside one ``Transaction`` (one database transaction)."""

    def __init__(
        self,
        tx: Transaction,
        replica: str,
        prepared: dict[str, Prepared],
        prepare: Callable[[Envelope], Prepared | str],
    ) -> None:
        self.tx, self.conn, self.ns = tx, tx.conn, tx.namespace
        self.replica = replica  # this database's: its own recall count is not in recall_counts
        self.prepared = prepared
        self.prepare = prepare  # for a held event released now (its vector was not made before)
        self.done = Applied()
        self._log: list[tuple[Envelope, str]] = []  # (event, origin id) for the change log
        self.rows: dict[str, Row] = {}  # memory id -> its row, as the merge leaves it
        self._looked: set[str] = set()  # ids whose rows were read (absent: not here)
        self._purged_ids: set[str] = set()
        self._counts: dict[tuple[str, str], int] = {}  # (memory id, replica) -> its recall count
        self._dirty: set[tuple[str, str]] = set()
        self._counted: set[str] = set()  # memories whose counts were read
        self._recalled: dict[int, Row] = {}  # seq -> row whose recall statistics changed

    # --- the batch -----------------------------------------------------------------------------
    def run(self, batch: Sequence[Envelope]) -> Applied:
        """Apply a batch. The merge commutes, so the batch's stores go first, all in one insert;
        then the rest in order, on rows read once for the whole batch."""
        fresh = self._unseen(batch)
        ids = {e.event.memory_id for e in fresh} | {
            e.event.payload["target_id"] for e in fresh if e.event.op is Op.LINK
        }
        self._load(ids)
        self._purged_ids = self._find_purged(ids)
        self._load_counts({e.event.memory_id for e in fresh if e.event.op is Op.RECALL})
        stores = [e for e in fresh if e.event.op in (Op.STORE, Op.IMPORT)]
        new = self._insert_all(stores)
        for env in self._released(new) + [e for e in fresh if e.event.op not in (Op.STORE, Op.IMPORT)]:
            self.one(env)
        self._write_counts()
        self.flush()
        return self.done

    def _unseen(self, batch: Sequence[Envelope]) -> list[Envelope]:
        """The events not applied (nor held) here before."""
        ids = [e.id for e in batch]
        seen: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            seen.update(self.conn.execute(_APPLIED, {"ids": chunk}).scalars())
            seen.update(self.conn.execute(_HELD, {"ids": chunk}).scalars())
        out = []
        for env in batch:
            if env.id in seen:
                self.done.duplicates += 1
            else:
                seen.add(env.id)
                out.append(env)
        return out

    def flush(self) -> None:
        if self._log:
            events = [replace(env.event, namespace=self.ns) for env, _ in self._log]
            changelog.record(self.conn, self.tx.dialect, events, origin=[o for _, o in self._log])
            self._log.clear()

    def refuse(self, origin: str, body: str, reason: str) -> None:
        """Hold a bad event for inspection (it is never applied)."""
        self._hold(origin, None, body, reason)
        self.done.refused += 1

    def one(self, env: Envelope) -> None:
        """Apply one event other than a store (those are inserted together)."""
        e = env.event
        row = self._row(e.memory_id)
        missing = [] if row is not None else [e.memory_id]
        if e.op is Op.LINK and self._row(e.payload["target_id"]) is None:
            missing.append(e.payload["target_id"])
        if missing:
            if any(x in self._purged_ids for x in missing):
                self._applied(env)
            else:
                self._hold(env.id, missing[0], body_of(env), f"waits for memory {missing[0]}")
                self.done.waiting += 1
            return
        assert row is not None
        if e.op is Op.UPDATE:
            self._update(env, row)
        elif e.op is Op.FORGET:
            self._forget(env, row)
        elif e.op is Op.LINK:
            self._link(env)
        elif e.op is Op.RECALL:
            self._recall(env, row)
        self._applied(env)

    # --- the rules --------------------------------------------------------------------------
    def _insert_all(self, stores: Sequence[Envelope]) -> list[str]:
        """Insert the memories these store events make that are not here (nor purged here);
        the ids inserted."""
        policy, s = self.tx._policy(self.conn, self.ns), self.tx.settings
        todo: dict[str, tuple[Envelope, Memory, Prepared, Any]] = {}
        for env in stores:
            mid = env.event.memory_id
            if mid in self.rows or mid in self._purged_ids or mid in todo:
                self._applied(env)  # here already, or purged here after its forget
                continue
            ready = self.prepared.get(env.id) or self.prepare(env)
            if isinstance(ready, str):  # it cannot be stored here (no key for it, say)
                self.refuse(env.id, body_of(env), ready)
                continue
            payload = dict(env.event.payload)
            stamps = payload.pop("stamps", None)  # a snapshot's: the fields written since the store
            # Its place here: scored as a new memory with its recalls so far.
            score = memory_score(payload.get("recall_count") or 0, 0.0, payload["importance"], s)
            payload.update(namespace=self.ns, zone=policy.zone_for(score).value, score=score)
            todo[mid] = (env, Memory.from_dict(payload), ready, stamps)
        if not todo:
            return []
        self._settle_duplicates(todo)
        self.tx.adopt([(x, ready.vector, ready.search_text) for _, x, ready, _ in todo.values()])
        for mid, (env, x, _, stamps) in todo.items():
            if stamps:
                self.conn.execute(memories.update().where(m.id == mid).values(stamps=stamps))
            self._counted.add(mid)  # new here: no counts yet
            if x.recall_count:  # an imported memory's counts are its origin replica's
                self._counts[(mid, env.replica)] = x.recall_count
                self._dirty.add((mid, env.replica))
            self._applied(env)
        self._looked -= set(todo)  # looked for before: absent then
        self._load(set(todo))
        return list(todo)

    def _settle_duplicates(self, todo: dict[str, tuple[Envelope, Memory, Prepared, Any]]) -> None:
        """Memories with the same content in one thread: the smaller id stays, on every
        replica; the others become tombstones (those already here too)."""
        hashes = list({x.content_hash for _, x, _, _ in todo.values()})
        here: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for i in range(0, len(hashes), 500):
            q = sa.select(m.id, m.thread, m.content_hash, m.created_at).where(
                m.namespace == self.ns, m.deleted_at.is_(None), m.content_hash.in_(hashes[i : i + 500])
            )
            for mid, thread, h, created in self.conn.execute(q):
                here.setdefault((thread or "", h), []).append((mid, created))
        for mid, (env, x, ready, stamps) in list(todo.items()):
            if x.deleted_at is not None:
                continue
            key = (x.thread or "", x.content_hash)
            rivals = here.setdefault(key, [])
            if not rivals:
                rivals.append((mid, x.created_at))
                continue
            (keeper, kept_at) = min(rivals)
            at = max(kept_at, x.created_at)
            if mid < keeper:
                if keeper in todo:
                    k_env, k_x, k_ready, k_stamps = todo[keeper]
                    todo[keeper] = (
                        k_env,
                        replace(k_x, deleted_at=max(k_x.created_at, x.created_at)),
                        k_ready,
                        k_stamps,
                    )
                else:
                    row = self._row(keeper)
                    assert row is not None
                    self._tombstone(row, at, env, "/duplicate")
                here[key] = [(mid, x.created_at)]
            else:
                todo[mid] = (env, replace(x, deleted_at=at), ready, stamps)

    def _released(self, new: Sequence[str]) -> list[Envelope]:
        """The events that waited for these memories, taken out of waiting."""
        h, out = sync_held.c, []
        for i in range(0, len(new), 500):
            chunk = new[i : i + 500]
            waiting = self.conn.execute(_WAITING, {"ns": self.ns, "ids": chunk}).all()
            if waiting:
                self.conn.execute(sync_held.delete().where(h.origin.in_([o for o, _ in waiting])))
            out += [envelope_of(orjson.loads(body), self.ns) for _, body in waiting]
        self.done.waiting -= len(out)
        return out

    def _update(self, env: Envelope, row: Row) -> None:
        e, p, conn = env.event, env.event.payload, self.conn
        clock = merged(row.vector_clock or {}, e.vector_clock)
        values: dict[str, Any] = {"hlc": max(row.hlc, e.hlc), "vector_clock": clock}
        theirs = stamp_of(e.hlc, e.agent, e.vector_clock.get(e.agent, 0))
        stamps = dict(row.stamps or {})
        fields = [g for g in REGISTERS if g in p]
        won = [g for g in fields if theirs > stamps.get(g, "")]
        if "content" in won and self._duplicate(row, p["content_hash"]):
            won.remove("content")  # it would make a second copy of another memory: held
            self._hold(env.id + "/content", None, body_of(env), "the new content duplicates another memory")
        # A conflict: a field written here by an edit this one had not seen (concurrent).
        clashing = [
            g for g in fields if g in stamps and stamps[g] != theirs and not _seen(stamps[g], e.vector_clock)
        ]
        if clashing:
            self._conflict(env, row, clashing, stamps, theirs)
        elif dominated(row.vector_clock or {}, e.vector_clock):  # it saw every version here
            self._close_conflicts(row.id, f"superseded by {env.id}")
        for g in won:
            stamps[g] = theirs
            if g == "content":
                ready = self.prepared.get(env.id) or self.prepare(env)
                if isinstance(ready, str):
                    self.refuse(env.id + "/content", body_of(env), ready)
                    continue
                values.update(content=p["content"], content_hash=p["content_hash"], key_id=p.get("key_id"),
                              search_text=ready.search_text)  # fmt: skip
                conn.execute(
                    memory_vectors.update()
                    .where(memory_vectors.c.seq == row.seq)
                    .values(embedding=ready.vector)
                )
            elif g == "metadata":
                values["meta"] = p["metadata"]
            elif g in ("importance", "pinned"):
                values[g] = p[g]
        values.update(stamps=stamps, updated_at=max(row.updated_at, e.created_at))
        conn.execute(memories.update().where(m.seq == row.seq).values(**values))
        vars(row).update(values)
        if "tags" in won:
            conn.execute(memory_tags.delete().where(memory_tags.c.memory_seq == row.seq))
            put_tags(conn, self.tx.dialect, ((row.seq, t) for t in p["tags"]))
        if "content" in values:
            fulltext.reindex(conn, self.tx.dialect, self.ns, [row.seq], self.tx.window)
        self.tx.touched.add(row.id)

    def _forget(self, env: Envelope, row: Row) -> None:
        e = env.event
        was = row.deleted_at
        # Forgotten here too: the earliest forget's time.
        at = e.created_at if was is None else min(was, e.created_at)
        values = {"deleted_at": at, "vector_clock": merged(row.vector_clock or {}, e.vector_clock),
                  "hlc": max(row.hlc, e.hlc)}  # fmt: skip
        self.conn.execute(memories.update().where(m.seq == row.seq).values(**values))
        vars(row).update(values)
        if was is None:
            self._unindex(row)
            self._close_conflicts(row.id, f"forgotten by {env.id}")

    def _tombstone(self, row: Row, at: float, env: Envelope, why: str) -> None:
        """Forget a memory here as every replica does on its own (no event of its own is
        published: the others derive it from the same two memories)."""
        self.conn.execute(memories.update().where(m.seq == row.seq).values(deleted_at=at))
        row.deleted_at = at
        self._unindex(row)
        forget = changelog.event((self.ns, row.id), Op.FORGET, env.event.agent, env.event.hlc, at,
                                 {"reason": "duplicate"}, row.vector_clock or {})  # fmt: skip
        self._log.append((replace(env, event=forget), env.id + why))

    def _unindex(self, row: Row) -> None:
        """A forgotten memory's words out of the full-text index, its own and its neighbours'."""
        tx = self.tx
        tx.dialect.text_index_drop(self.conn, self.ns, [row.seq])
        place = [(row.thread, row.position)] if row.thread is not None and row.position is not None else []
        around = fulltext.neighbours(self.conn, self.ns, place, tx.window)
        fulltext.reindex(self.conn, tx.dialect, self.ns, around, tx.window)
        tx.touched.add(row.id)

    def _link(self, env: Envelope) -> None:
        e, p = env.event, env.event.payload
        theirs = stamp_of(e.hlc, e.agent)
        key = (
            (links.c.source_id == e.memory_id)
            & (links.c.target_id == p["target_id"])
            & (links.c.kind == p["kind"])
        )
        found = self.conn.execute(sa.select(links.c.stamp).where(key)).first()
        if found is None:
            link = Link(e.memory_id, p["target_id"], p["kind"], p["weight"], e.created_at)
            edges.put(self.conn, self.tx.dialect, self.ns, link, theirs)
        elif theirs > (found.stamp or ""):
            self.conn.execute(links.update().where(key).values(weight=p["weight"], stamp=theirs))

    def _recall(self, env: Envelope, row: Row) -> None:
        p = env.event.payload
        key = (row.id, p["replica"])
        self._load_counts({row.id})  # (a held event's memory was not in the batch)
        if p["replica"] == self.replica or p["count"] <= self._counts.get(key, 0):
            return  # this database's own count, or no more than known
        row.recall_count += p["count"] - self._counts.get(key, 0)
        self._counts[key] = p["count"]
        self._dirty.add(key)
        at = p.get("at")
        if at is not None:
            row.last_recalled_at = max(row.last_recalled_at or at, at)
            row.last_access_at = max(row.last_access_at, at)
        self._recalled[row.seq] = row
        self.tx.touched.add(row.id)

    def _load_counts(self, ids: set[str]) -> None:
        """The other replicas' recall counts of these memories, as known here."""
        wanted, r = list(ids - self._counted), recall_counts.c
        self._counted.update(wanted)
        for i in range(0, len(wanted), 500):
            q = sa.select(r.memory_id, r.replica, r.count).where(r.memory_id.in_(wanted[i : i + 500]))
            self._counts.update({(mid, rep): n for mid, rep, n in self.conn.execute(q)})

    def _write_counts(self) -> None:
        """The recall statistics the batch changed, in one statement each."""
        if self._recalled:
            stmt = memories.update().where(m.seq == sa.bindparam("b_seq"))
            stmt = stmt.values(recall_count=sa.bindparam("b_n"), last_recalled_at=sa.bindparam("b_r"),
                               last_access_at=sa.bindparam("b_a"))  # fmt: skip
            rows = [{"b_seq": seq, "b_n": x.recall_count, "b_r": x.last_recalled_at, "b_a": x.last_access_at}
                    for seq, x in sorted(self._recalled.items())]  # fmt: skip
            self.conn.execute(stmt, rows)
        if self._dirty:
            ins = self.tx.dialect.insert(recall_counts)
            stmt = ins.on_conflict_do_update(
                index_elements=["memory_id", "replica"], set_={"count": ins.excluded.count}
            )
            rows = [
                {"memory_id": mid, "replica": rep, "count": self._counts[(mid, rep)]}
                for mid, rep in sorted(self._dirty)
            ]
            self.conn.execute(stmt, rows)

    def _conflict(
        self, env: Envelope, row: Row, fields: list[str], stamps: dict[str, str], theirs: str
    ) -> None:
        e = env.event
        ours = max(stamps.get(g, "") for g in fields)
        mine = {
            "values": _values(row, fields, self.conn),
            "stamp": ours,
            "vector_clock": row.vector_clock or {},
        }
        other = {"values": {g: e.payload[g] for g in fields}, "stamp": theirs, "vector_clock": e.vector_clock}
        winner, loser = (other, mine) if theirs > ours else (mine, other)
        self.conn.execute(
            conflicts.insert().values(namespace=self.ns, memory_id=row.id, fields=fields, winner=winner,
                                      loser=loser, detected_at=self.tx.now)
        )  # fmt: skip
        self.done.conflicts += 1

    def _close_conflicts(self, memory_id: str, why: str) -> None:
        c = conflicts.c
        self.conn.execute(
            conflicts.update()
            .where(c.namespace == self.ns, c.memory_id == memory_id, c.resolved_at.is_(None))
            .values(resolved_at=self.tx.now, resolution=why)
        )

    # --- bookkeeping ------------------------------------------------------------------------
    def _applied(self, env: Envelope) -> None:
        self._log.append((env, env.id))
        self.done.applied += 1

    def _hold(self, origin: str, awaits: str | None, body: str, reason: str) -> None:
        ins = self.tx.dialect.insert(sync_held).values(
            origin=origin, namespace=self.ns, awaits=awaits, event=body, reason=reason, held_at=self.tx.now
        )
        self.conn.execute(ins.on_conflict_do_nothing())

    def _load(self, ids: set[str]) -> None:
        """Read these memories' rows, and lock them until the commit (PostgreSQL): a local edit
        or another worker of this replica's group waits instead of writing over the merge."""
        wanted = list(ids - self._looked)
        self._looked.update(wanted)
        for i in range(0, len(wanted), 500):
            for r in self.conn.execute(_ROWS, {"ns": self.ns, "ids": wanted[i : i + 500]}):
                self.rows[r.id] = Row(**r._mapping)

    def _row(self, memory_id: str) -> Row | None:
        if memory_id not in self._looked:
            self._load({memory_id})
        return self.rows.get(memory_id)

    def _find_purged(self, ids: set[str]) -> set[str]:
        """Those of these memories purged here (their purge event stays in the log)."""
        wanted = list(ids)
        out: set[str] = set()
        for i in range(0, len(wanted), 500):
            out.update(self.conn.execute(_PURGED, {"ns": self.ns, "ids": wanted[i : i + 500]}).scalars())
        return out

    def _duplicate(self, row: Row, content_hash: str) -> bool:
        q = sa.select(m.seq).where(
            m.namespace == self.ns, m.deleted_at.is_(None), m.content_hash == content_hash,
            sa.func.coalesce(m.thread, "") == (row.thread or ""), m.seq != row.seq,
        )  # fmt: skip
        return self.conn.execute(q.limit(1)).first() is not None


def _seen(stamp: str, clock: dict[str, int]) -> bool:
    """Whether a vector clock has seen the write of this stamp."""
    _, agent, count = parse_stamp(stamp)
    return clock.get(agent, 0) >= count


def _values(row: Row, fields: list[str], conn: sa.Connection) -> dict[str, Any]:
    """The fields' values as this replica holds them."""
    out: dict[str, Any] = {}
    for g in fields:
        if g == "tags":
            q = (
                sa.select(memory_tags.c.tag)
                .where(memory_tags.c.memory_seq == row.seq)
                .order_by(memory_tags.c.tag)
            )
            out[g] = list(conn.execute(q).scalars())
        elif g == "metadata":
            out[g] = row.meta
        else:
            out[g] = getattr(row, g)
    return out
