"""What every flow does alike: open the memory, choose namespaces, run one task per item, and
report the outcome where an operator looks for it.

- The result is plain JSON (readable in a log, a test, or ``state.result()``), persisted so
  the Prefect API can hand it out later.
- Each item's outcome is also a table artifact on the run (the run's page in the Prefect UI).
- A run in which any item failed ends **Failed** (its result still attached), so
  ``prefect flow-run ls --state FAILED`` and automations find it. The other items still run.
- Only the project's own errors count as an item's failure; any other exception is a bug and
  fails the run at once, with its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Failed

from stellar_core import IngestResult, Settings, StellarError, StellarMemory

T = TypeVar("T")
Outcome = dict[str, Any] | State[dict[str, Any]]  # the result, or a Failed state holding it


def open_memory(home: str | None) -> StellarMemory:
    """``home``: a data directory, database file or URL (default: from ``STELLAR_*`` settings).

    As an agent of its own (``flow-<host>-<random>`` unless ``STELLAR_AGENT_ID`` is set), with
    the upkeep thread: on PostgreSQL it adds the vectors a flow stores to the HNSW graph while
    the flow runs."""
    settings = Settings()
    return StellarMemory(home, agent=settings.agent("flow"), settings=settings)


def namespaces_of(mem: StellarMemory, namespaces: list[str] | None) -> list[str]:
    """The given namespaces, or every one holding live memories."""
    return mem.namespaces() if namespaces is None else list(namespaces)


def per_namespace(
    mem: StellarMemory,
    namespaces: list[str] | None,
    step: Callable[[StellarMemory, str], T],
    counts: Callable[[T], dict[str, Any]],
    problems: Callable[[T], list[str]] = lambda _: [],
) -> Outcome:
    """``{namespace: counts}``; a namespace whose task failed (or whose ``problems`` are not
    empty) gets ``{"error": ...}`` and fails the run; the others still run."""
    logger = get_run_logger()
    out: dict[str, Any] = {}
    rows, failures = [], []
    for ns in namespaces_of(mem, namespaces):
        try:
            result = step(mem, ns)
        except StellarError as exc:
            logger.error("%s failed: %s", ns, exc)
            out[ns] = {"error": f"{type(exc).__name__}: {exc}"}
            failures.append(ns)
            rows.append({"namespace": ns, "outcome": "failed", "detail": out[ns]["error"]})
            continue
        out[ns], trouble = counts(result), problems(result)
        logger.info("%s: %s", ns, out[ns])
        if trouble:
            failures.append(ns)
        detail = "; ".join(trouble) or ", ".join(f"{k} {v}" for k, v in out[ns].items() if _plain(v))
        rows.append({"namespace": ns, "outcome": "failed" if trouble else "ok", "detail": detail})
    return finish(out, rows, failures, "namespaces")


def ingest_each(
    sources: Iterable[T], ingest: Callable[[T], IngestResult], name: Callable[[T], str]
) -> Outcome:
    """Ingest every source; totals, plus ``failed``: ``{source: reason}`` for sources whose task
    failed (after its retries). Nothing stored before is touched by a failure."""
    logger = get_run_logger()
    total, failed = IngestResult(), {}
    rows = []
    for source in sources:
        try:
            result = ingest(source)
        except StellarError as exc:
            logger.error("%s failed: %s", name(source), exc)
            failed[name(source)] = f"{type(exc).__name__}: {exc}"
            rows.append({"source": name(source), "outcome": "failed", "detail": failed[name(source)]})
            continue
        total += result
        counts = f"{result.new} new, {result.unchanged} unchanged, {result.replaced} replaced"
        skipped = "; ".join(f"skipped {where}: {why}" for where, why in result.skipped)
        if result.skipped and not result.sources:  # nothing of it could be read: a missing path
            logger.error("%s failed: %s", name(source), skipped)
            failed[name(source)] = skipped
            rows.append({"source": name(source), "outcome": "failed", "detail": skipped})
            continue
        logger.info("%s: %s", name(source), counts)
        detail = "; ".join(filter(None, [counts, skipped]))
        rows.append({"source": name(source), "outcome": "ok", "detail": detail})
    return finish({**total.to_dict(), "failed": failed}, rows, list(failed), "sources")


def finish(result: dict[str, Any], rows: list[dict[str, Any]], failures: list[str], items: str) -> Outcome:
    """Attach the table of outcomes to the run (an artifact keyed by the flow's name, so the
    UI lists each flow's tables over time); Failed if anything failed."""
    bad = len(failures)
    summary = f"{bad} of {len(rows)} {items} failed" if bad else f"all {len(rows)} {items} ok"
    key = str(flow_run.flow_name or "stellar").replace("_", "-") + "-outcome"
    create_table_artifact(rows, key=key, description=summary)
    if bad:
        return Failed(message=f"{summary}: {', '.join(failures[:5])}", data=result)
    return result


def _plain(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)
