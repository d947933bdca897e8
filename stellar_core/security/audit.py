"""The audit log: one record per access, reads included (who, what, which namespace, which
memory ids, allowed / denied / error, when), never any content.

Append-only and hash-chained: each record carries the hash of the one before it, so an edited,
deleted or reordered record breaks the chain at the first place ``verify`` looks. Records are
collected in memory and written in batches (by the upkeep thread every second, and on close):
a read must not wait for a write transaction. A crash loses at most that second of records;
every write is in the change log as well. Records older than ``audit_retention_days`` are
dropped, and the hash of the last one dropped is kept as the chain's new anchor.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from stellar_core.store.database import Database
from stellar_core.store.schema import audit_log, meta

GENESIS = "0" * 64
_HEAD, _ANCHOR = "audit_head", "audit_anchor"  # stellar_meta keys: the last hash; the first prev
MAX_IDS = 100  # memory ids kept per record (a record of a bigger read says how many)


@dataclass(frozen=True)
class AuditRecord:
    at: float
    principal: str
    action: str
    namespace: str | None
    memory_ids: tuple[str, ...]
    outcome: str  # "allowed", "denied", "error"
    detail: str = ""

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["memory_ids"] = list(self.memory_ids)
        return out

    def digest(self, prev: str) -> str:
        body = [
            self.at,
            self.principal,
            self.action,
            self.namespace,
            list(self.memory_ids),
            self.outcome,
            self.detail,
        ]
        return hashlib.sha256((prev + json.dumps(body, separators=(",", ":"))).encode()).hexdigest()


class AuditLog:
    """Records waiting to be written, and the writing."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[AuditRecord] = []
        self._lock = threading.Lock()

    def add(
        self,
        at: float,
        principal: str,
        action: str,
        namespace: str | None,
        ids: Iterable[str],
        outcome: str,
        detail: str = "",
    ) -> None:
        ids = list(ids)
        if len(ids) > MAX_IDS:
            detail = f"{detail} ({len(ids)} memories; the first {MAX_IDS} listed)".strip()
        record = AuditRecord(at, principal, action, namespace, tuple(ids[:MAX_IDS]), outcome, detail)
        with self._lock:
            self._pending.append(record)

    def flush(self) -> int:
        """Write the waiting records, chained; how many."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            with self._db.write() as conn:
                self._db.dialect.lock_namespaces(conn, ["stellar-audit"], exclusive=True)  # one chain
                prev = _meta(conn, _HEAD) or GENESIS
                rows = []
                for r in batch:
                    digest = r.digest(prev)
                    rows.append({**r.row(), "prev_hash": prev, "hash": digest})
                    prev = digest
                conn.execute(audit_log.insert(), rows)
                _put_meta(conn, self._db, _HEAD, prev)
        except Exception:
            with self._lock:  # kept for the next try
                self._pending[:0] = batch
            raise
        return len(batch)


def verify(conn: sa.Connection) -> tuple[int, int | None, str]:
    """(records checked, seq of the first bad record or None, what is wrong with it)."""
    expected = _meta(conn, _ANCHOR) or GENESIS
    checked = 0
    q = sa.select(audit_log).order_by(audit_log.c.seq)
    for row in conn.execute(q).yield_per(1_000):
        r = AuditRecord(row.at, row.principal, row.action, row.namespace, tuple(row.memory_ids or ()),
                        row.outcome, row.detail)  # fmt: skip
        if row.prev_hash != expected:
            return checked, int(row.seq), "a record before it was deleted, reordered or edited"
        if r.digest(row.prev_hash) != row.hash:
            return checked, int(row.seq), "it was edited"
        expected = row.hash
        checked += 1
    head = _meta(conn, _HEAD)
    if head is not None and head != expected:
        return checked, None, "the newest records were deleted"
    return checked, None, ""


def prune(db: Database, before: float) -> int:
    """Drop the records older than ``before``; the chain's anchor moves to the first kept one."""
    with db.write() as conn:
        db.dialect.lock_namespaces(conn, ["stellar-audit"], exclusive=True)
        last = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash)
            .where(audit_log.c.at < before)
            .order_by(audit_log.c.seq.desc())
        ).first()
        if last is None:
            return 0
        gone = conn.execute(audit_log.delete().where(audit_log.c.seq <= last.seq)).rowcount
        _put_meta(conn, db, _ANCHOR, last.hash)
        return int(gone or 0)


def recent(conn: sa.Connection, limit: int, namespaces: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The newest records, newest first (of some namespaces only, if given)."""
    q = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if namespaces is not None:
        q = q.where(audit_log.c.namespace.in_(list(namespaces)))
    return [dict(r._mapping) for r in conn.execute(q)]


def _meta(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()


def _put_meta(conn: sa.Connection, db: Database, key: str, value: str) -> None:
    ins = db.dialect.insert(meta).values(key=key, value=value)
    conn.execute(ins.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": ins.excluded.value}))
