"""The dashboard's views by their sidebar names; each renders one namespace."""

from __future__ import annotations

from collections.abc import Callable

from dashboard import browser, events, flow_runs, graph, solar, statistics
from stellar_core import StellarMemory

VIEWS: dict[str, Callable[[StellarMemory, str], None]] = {
    "Solar system": solar.render,
    "Graph": graph.render,
    "Statistics": statistics.render,
    "Memories": browser.render,
    "Events": events.render,
    "Flow runs": flow_runs.render,
}
