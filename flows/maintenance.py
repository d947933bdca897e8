"""The maintenance flow: summarise -> dedup -> reorbit -> forget, each a subflow of its own."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.dedup import dedup_flow
from flows.forget import forget_flow
from flows.reorbit import reorbit_flow
from flows.summarise import summarise_flow


@flow(name="maintenance")
def maintenance_flow(namespaces: list[str] | None = None, home: str | None = None) -> dict[str, Any]:
    """Summaries first (so dedup sees them and leaves them be), then merging, rezoning and
    forgetting. Each step reports per namespace; one failing step does not stop the next."""
    return {
        "summarise": summarise_flow(namespaces=namespaces, home=home),
        "dedup": dedup_flow(namespaces=namespaces, home=home),
        "reorbit": reorbit_flow(namespaces=namespaces, home=home),
        "forget": forget_flow(namespaces=namespaces, home=home),
    }
