"""The JSON shapes of what the verbs return, one per result type, shared by the CLI, the HTTP
API and the MCP server so that a memory looks the same wherever it is read."""

from __future__ import annotations

import enum
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from stellar_core.graph import Neighbourhood
from stellar_core.models import ChangeEvent, Memory, RecallHit, SyncStatus
from stellar_core.snippets import snippet


def memory(x: Memory) -> dict[str, Any]:
    """A memory with every field (``to_dict``) and where it came from, for people."""
    return {**x.to_dict(), "origin": x.origin}


def hit(h: RecallHit, query: str) -> dict[str, Any]:
    """A recall hit: the memory, its relevance, the arms that found it and the snippet that
    holds the query's words."""
    return {**memory(h.memory), "relevance": h.relevance, "via": list(h.via),
            "snippet": snippet(h.memory.content, query, 110)}  # fmt: skip


def event(e: ChangeEvent) -> dict[str, Any]:
    """A change event (its ``seq`` is 0 when it came from another replica's stream)."""
    return {**asdict(e), "op": e.op.value}


def neighbourhood(h: Neighbourhood) -> dict[str, Any]:
    """The memories around one (each with ``hops`` from it, nearest first) and their links."""
    return {
        "memory_id": h.centre,
        "memories": [{**memory(x), "hops": hops} for x, hops in h.nodes.values() if x.id != h.centre],
        "links": [report(e) for e in h.links],
        "truncated": h.truncated,
    }


def sync_status(namespace: str, configured: bool, found: list[SyncStatus]) -> dict[str, Any]:
    """``memory_sync_status``: how far this database, as a replica, is with a namespace."""
    detail = (
        "" if configured else "sync is not configured here (no STELLAR_SYNC_URL): every change stays local"
    )
    return {"namespace": namespace, "configured": configured, "detail": detail,
            "status": report(found[0]) if found else None}  # fmt: skip


def plain(value: Any) -> Any:
    """Any other result (Stats, ReorbitReport, Link, Grant, SyncStatus, Conflict, ...) as
    JSON-ready data: dataclasses as objects, enums (zones as keys too) by value."""
    if isinstance(value, Memory):
        return memory(value)
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def report(value: Any) -> dict[str, Any]:
    """One result dataclass (a report, a grant, a status) as a JSON object."""
    out: dict[str, Any] = plain(value)
    return out
