"""The summarise flow: summary memories for long documents and memories, kept current."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import open_memory, per_namespace
from tasks.upkeep import summarise_namespace


@flow(name="summarise")
def summarise_flow(namespaces: list[str] | None = None, home: str | None = None) -> dict[str, Any]:
    """``{namespace: {documents, memories, created, unchanged, replaced, failed}}``."""
    with open_memory(home) as mem:
        return per_namespace(mem, namespaces, summarise_namespace, lambda r: r.to_dict())
