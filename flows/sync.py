"""The sync flow: one round of replication with the other replicas, through Redis Streams.

Publish this database's outbox, apply the other replicas' events, trim the streams. Agents
that sync in the background (``STELLAR_SYNC_BACKGROUND``) or ``stellar sync run`` need it not;
a hub that many agents write to directly (PostgreSQL) runs it on a short schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger

from flows.common import Outcome, finish, open_memory
from stellar_core import StellarError, StellarMemory, SyncUnavailable
from tasks.sync import apply_events, publish_changes, trim_streams


@flow(name="sync", persist_result=True)
def sync_flow(namespaces: list[str] | None = None, batches: int = 100, home: str | None = None) -> Outcome:
    """``{publish: {published}, apply: {batches, applied, duplicates, waiting, refused,
    conflicts}, trim: {trimmed}}`` (``namespaces``: those to apply and trim; default: every
    one this replica follows; ``batches``: of ``sync_batch`` events at most).

    Redis not answering (after the tasks' retries), or sync not configured, fails the run and
    skips the steps after it; nothing is lost: the outbox keeps what was not published, the
    streams what was not applied."""
    with open_memory(home) as mem:
        return in_order(
            mem,
            {
                "publish": lambda: {"published": publish_changes(mem)},
                "apply": lambda: apply_events(mem, namespaces, batches),
                "trim": lambda: {"trimmed": trim_streams(mem, namespaces)},
            },
        )


def in_order(mem: StellarMemory, steps: dict[str, Callable[[], dict[str, Any]]]) -> Outcome:
    """``{step: counts}``; a step that failed gets ``{"error": ...}`` and fails the run. The
    steps after one that could not reach Redis are ``{"skipped": ...}``: they need it too."""
    logger = get_run_logger()
    out: dict[str, Any] = {}
    rows, failures = [], []
    unreachable = None
    for name, step in steps.items():
        if unreachable is not None:
            out[name] = {"skipped": unreachable}
            rows.append({"step": name, "outcome": "skipped", "detail": unreachable})
            continue
        try:
            out[name] = step()
        except StellarError as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.error("%s failed: %s", name, error)
            out[name] = {"error": error}
            failures.append(f"{name} ({error})")
            rows.append({"step": name, "outcome": "failed", "detail": error})
            if mem.settings.sync_url is None:
                unreachable = "not run: sync is not configured"
            elif isinstance(exc, SyncUnavailable):
                unreachable = "not run: Redis does not answer"
            continue
        logger.info("%s: %s", name, out[name])
        detail = ", ".join(f"{k} {v}" for k, v in out[name].items())
        rows.append({"step": name, "outcome": "ok", "detail": detail})
    return finish(out, rows, failures, "steps")
