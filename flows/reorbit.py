"""The reorbit flow: rescore and rezone every namespace (or the given ones) on a schedule."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from stellar_core import ReorbitReport, StellarMemory
from tasks.lifecycle import reorbit_namespace


@flow(name="reorbit")
def reorbit_flow(namespaces: list[str] | None = None, home: str | None = None) -> dict[str, Any]:
    """Reorbit each namespace (default: every one holding live memories).

    ``home`` is a data directory, database file or URL (default: from ``STELLAR_*`` settings).
    Returns ``{namespace: {scored, moved_inward, moved_outward, forgotten, purged, zones}}``:
    plain JSON, so the result reads the same in the Prefect UI, a log or a test.
    """
    logger = get_run_logger()
    counts: dict[str, Any] = {}
    with StellarMemory(home, background=False) as mem:
        targets = mem.namespaces() if namespaces is None else namespaces
        logger.info("reorbiting %d namespace(s)", len(targets))
        for ns in targets:
            report = reorbit_namespace(mem, ns)
            counts[ns] = _counts(report)
            logger.info(
                "%s: %d scored, %d inward, %d outward, %d forgotten, %d purged (%.2fs)",
                ns,
                report.scored,
                report.moved_inward,
                report.moved_outward,
                report.forgotten,
                report.purged,
                report.seconds,
            )
    return counts


def _counts(report: ReorbitReport) -> dict[str, Any]:
    return {
        "scored": report.scored,
        "moved_inward": report.moved_inward,
        "moved_outward": report.moved_outward,
        "forgotten": report.forgotten,
        "purged": report.purged,
        "zones": {zone.value: n for zone, n in report.zones.items()},
    }
