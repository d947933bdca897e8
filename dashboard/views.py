"""The dashboard's views by their sidebar names; each renders one namespace as a principal."""

from __future__ import annotations

from collections.abc import Callable

from dashboard import audit, browser, events, flow_runs, graph, solar, statistics
from stellar_core import Principal, StellarMemory

VIEWS: dict[str, Callable[[StellarMemory, str, Principal], None]] = {
    "Solar system": solar.render,
    "Graph": graph.render,
    "Statistics": statistics.render,
    "Memories": browser.render,
    "Events": events.render,
    "Flow runs": flow_runs.render,
    "Audit": audit.render,
}
ADMIN_ONLY = {"Audit"}
