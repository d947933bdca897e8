"""What every flow does alike: open the memory, choose namespaces, run one task per item and
collect results and failures as plain JSON (readable in the Prefect UI, a log or a test)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prefect import get_run_logger

from stellar_core import IngestResult, StellarMemory

T = TypeVar("T")


def open_memory(home: str | None) -> StellarMemory:
    """``home``: a data directory, database file or URL (default: from ``STELLAR_*`` settings).

    With the upkeep thread, as any agent: on PostgreSQL it adds the vectors a flow stores to
    the HNSW graph while the flow runs."""
    return StellarMemory(home)


def namespaces_of(mem: StellarMemory, namespaces: list[str] | None) -> list[str]:
    """The given namespaces, or every one holding live memories."""
    return mem.namespaces() if namespaces is None else list(namespaces)


def per_namespace(
    mem: StellarMemory,
    namespaces: list[str] | None,
    step: Callable[[StellarMemory, str], T],
    counts: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """``{namespace: counts}``; a namespace whose task failed gets ``{"error": ...}`` and the
    others still run."""
    logger = get_run_logger()
    out: dict[str, Any] = {}
    for ns in namespaces_of(mem, namespaces):
        try:
            out[ns] = counts(step(mem, ns))
        except Exception as exc:  # one namespace's failure is reported, not the end of the run
            logger.error("%s failed: %s", ns, exc)
            out[ns] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            logger.info("%s: %s", ns, out[ns])
    return out


def ingest_each(
    sources: Iterable[T], ingest: Callable[[T], IngestResult], name: Callable[[T], str]
) -> dict[str, Any]:
    """Ingest every source; totals, plus ``failed``: ``{source: reason}`` for sources whose task
    failed (after its retries). Nothing stored before is touched by a failure."""
    logger = get_run_logger()
    total, failed = IngestResult(), {}
    for source in sources:
        try:
            result = ingest(source)
        except Exception as exc:
            logger.error("%s failed: %s", name(source), exc)
            failed[name(source)] = f"{type(exc).__name__}: {exc}"
            continue
        total += result
        logger.info(
            "%s: %d new, %d unchanged, %d replaced",
            name(source),
            result.new,
            result.unchanged,
            result.replaced,
        )
    return {**total.to_dict(), "failed": failed}
