"""LoCoMo adapter for ../shared/bench/locomo_retrieval.py, on the real store/recall path.

One namespace per conversation, one thread per session (turns of a session share its start
time), each turn stored as "<speaker>: <text>" with default settings. Run from the repo root:

    python ../shared/bench/locomo_retrieval.py --adapter benchmarks/locomo_adapter.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict

from stellar_core import StellarMemory

_dir: str | None = None
_mem: StellarMemory | None = None
_pending: dict[str, list[dict]] = defaultdict(list)
_turns: dict[str, list[str]] = {}  # memory id -> turn ids (identical turns share one memory)


def reset() -> None:
    global _dir, _mem
    if _mem is not None:
        _mem.close()
    if _dir is not None:
        shutil.rmtree(_dir, ignore_errors=True)
    _dir = tempfile.mkdtemp(prefix="stellar-locomo-")
    _mem = StellarMemory(os.path.join(_dir, "locomo.db"))
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
