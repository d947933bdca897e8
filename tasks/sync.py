"""Sync tasks: this database's changes to the streams, the other replicas' from them, the
streams trimmed. Each is safe to retry: publishing marks a change published only once Redis
has it, and an event is acknowledged only once applied (applying one twice changes nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from prefect import task

from stellar_core import StellarMemory
from tasks.retry import TASK_OPTIONS

__all__ = ["apply_events", "publish_changes", "trim_streams"]


@task(**TASK_OPTIONS)
def publish_changes(mem: StellarMemory) -> int:
    """Publish the outbox; how many changes."""
    return mem.sync.publish_all()


@task(**TASK_OPTIONS)
def apply_events(mem: StellarMemory, namespaces: Sequence[str] | None, batches: int) -> dict[str, Any]:
    """Apply up to ``batches`` batches of the other replicas' events (fewer once the streams
    hold nothing more for this replica)."""
    n, done = mem.sync.drain(namespaces, batches)
    return {"batches": n, **asdict(done)}


@task(**TASK_OPTIONS)
def trim_streams(mem: StellarMemory, namespaces: Sequence[str] | None) -> int:
    """Trim the streams of what every replica has applied (and what outlived the longest
    retention); the entries dropped."""
    return mem.sync.trim(namespaces)
