"""The summarise flow: summary memories for long documents and memories, kept current."""

from __future__ import annotations

from prefect import flow

from flows.common import Outcome, open_memory, per_namespace
from stellar_core import SummaryResult
from tasks.maintenance import summarise_namespace


@flow(name="summarise", persist_result=True)
def summarise_flow(namespaces: list[str] | None = None, home: str | None = None) -> Outcome:
    """``{namespace: {documents, memories, created, unchanged, replaced, failed}}``."""
    with open_memory(home) as mem:
        return per_namespace(mem, namespaces, summarise_namespace, lambda r: r.to_dict(), unsummarised)


def unsummarised(result: SummaryResult) -> list[str]:
    """Sources that could not be summarised (the LLM down, say): they fail the run too."""
    return [f"{key}: {why}" for key, why in result.failed]
