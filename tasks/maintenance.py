"""Upkeep tasks, one namespace each: summaries of long documents, near-duplicate consolidation."""

from __future__ import annotations

from prefect import task

from stellar_core import DedupResult, StellarMemory, SummaryResult, consolidate, summarise
from tasks.retry import TASK_OPTIONS


@task(**TASK_OPTIONS)
def summarise_namespace(mem: StellarMemory, namespace: str) -> SummaryResult:
    """Summaries for the namespace's long documents and memories (kept current)."""
    return summarise(mem, namespace=namespace)


@task(**TASK_OPTIONS)
def dedup_namespace(mem: StellarMemory, namespace: str, threshold: float | None = None) -> DedupResult:
    """Merge the namespace's near-duplicates, keeping the history of what was merged."""
    return consolidate(mem, namespace=namespace, threshold=threshold)
