"""The forget flow: idle Cloud memories forgotten, old tombstones purged (zones as they are)."""

from __future__ import annotations

from prefect import flow

from flows.common import Outcome, open_memory, per_namespace
from tasks.lifecycle import forget_namespace


@flow(name="forget", persist_result=True)
def forget_flow(namespaces: list[str] | None = None, home: str | None = None) -> Outcome:
    """``{namespace: {forgotten, purged}}``."""
    with open_memory(home) as mem:
        return per_namespace(
            mem, namespaces, forget_namespace, lambda r: {"forgotten": r.forgotten, "purged": r.purged}
        )
