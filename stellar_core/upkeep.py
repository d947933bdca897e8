"""Work kept off the query path: batched recall statistics and vector-graph upkeep."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from stellar_core.store.database import Database
from stellar_core.store.dialect import in_json_list, json_list
from stellar_core.store.records import m
from stellar_core.store.schema import memories

log = logging.getLogger(__name__)


class RecallLog:
    """Counts recalls in memory; ``flush`` writes them in one transaction."""

    def __init__(
        self,
        db: Database,
        on_flush: Callable[[list[int]], None] | None = None,
        log: Callable[[sa.Connection, list[int]], None] | None = None,
    ) -> None:
        self._db = db
        self._on_flush = on_flush  # told the seqs written, after the commit
        self._log = log  # writes change events of the seqs, in the flush's transaction
        self._pending: Counter[int] = Counter()
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def add(self, seqs: Iterable[int], now: float) -> None:
        with self._lock:
            for seq in seqs:
                self._pending[seq] += 1
                self._last[seq] = now

    def flush(self) -> int:
        """Write pending counts; returns how many memories were touched."""
        with self._lock:
            pending, last = self._pending, self._last
            self._pending, self._last = Counter(), {}
        if not pending:
            return 0
        stmt = (
            memories.update()
            .where(m.seq == sa.bindparam("b_seq"))
            .values(
                recall_count=m.recall_count + sa.bindparam("b_n"),
                last_recalled_at=sa.bindparam("b_at"),
                last_access_at=sa.case(
                    (m.last_access_at > sa.bindparam("b_at"), m.last_access_at),
                    else_=sa.bindparam("b_at"),
                ),
            )
        )
        # In seq order: flushes of several processes then lock rows in the same order and
        # cannot deadlock one another (PostgreSQL; measured with 8 clients).
        rows = [{"b_seq": s, "b_n": pending[s], "b_at": last[s]} for s in sorted(pending)]
        try:
            with self._db.write() as conn:
                self._db.dialect.lock_namespaces(conn, self._namespaces(conn, list(pending)), exclusive=False)
                conn.execute(stmt, rows)
                if self._log is not None:
                    self._log(conn, sorted(pending))
        except Exception:
            with self._lock:  # keep the counts for the next try
                self._pending.update(pending)
                for s, t in last.items():
                    self._last[s] = max(t, self._last.get(s, t))
            raise
        if self._on_flush is not None:
            self._on_flush(list(pending))
        return len(rows)

    @staticmethod
    def _namespaces(conn: sa.Connection, seqs: list[int]) -> list[str]:
        q = sa.select(m.namespace).where(in_json_list(m.seq, "seqs")).distinct()
        return list(conn.execute(q, {"seqs": json_list(seqs)}).scalars())


class Upkeep(threading.Thread):
    """A daemon thread that runs ``tasks`` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, tasks: list[Callable[[], object]]) -> None:
        super().__init__(name="stellar-upkeep", daemon=True)
        self._interval = interval
        self._tasks = tasks
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self.run_once()

    def run_once(self) -> None:
        for task in self._tasks:
            try:
                task()
            except Exception:  # a failed round must not kill the thread; the next one retries
                log.exception("background upkeep failed")

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)
