"""The reorbit flow: rescore and rezone every namespace (or the given ones) on a schedule."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import Outcome, open_memory, per_namespace
from stellar_core import ReorbitReport
from tasks.lifecycle import reorbit_namespace


@flow(name="reorbit", persist_result=True)
def reorbit_flow(namespaces: list[str] | None = None, home: str | None = None) -> Outcome:
    """``{namespace: {scored, moved_inward, moved_outward, forgotten, purged, zones}}``."""
    with open_memory(home) as mem:
        return per_namespace(mem, namespaces, reorbit_namespace, reorbit_counts)


def reorbit_counts(report: ReorbitReport) -> dict[str, Any]:
    return {
        "scored": report.scored,
        "moved_inward": report.moved_inward,
        "moved_outward": report.moved_outward,
        "forgotten": report.forgotten,
        "purged": report.purged,
        "zones": {zone.value: n for zone, n in report.zones.items()},
    }
