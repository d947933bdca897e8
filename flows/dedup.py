"""The dedup flow: near-duplicates merged into one memory, the history of the others kept."""

from __future__ import annotations

from prefect import flow

from flows.common import Outcome, open_memory, per_namespace
from tasks.maintenance import dedup_namespace


@flow(name="dedup", persist_result=True)
def dedup_flow(
    namespaces: list[str] | None = None, threshold: float | None = None, home: str | None = None
) -> Outcome:
    """``{namespace: {scanned, clusters, merged, seconds}}``; ``threshold``: cosine similarity
    (default: the ``dedup_threshold`` setting)."""
    with open_memory(home) as mem:
        return per_namespace(
            mem, namespaces, lambda m, ns: dedup_namespace(m, ns, threshold), lambda r: r.to_dict()
        )
