"""The key rotation flow: every encrypted memory sealed again with the primary key, in batches.

Run it after making a new key primary (``stellar key new``); a run killed mid-way resumes where
it stopped when run again. Once it reports an old key unused, ``stellar key retire ID``.
"""

from __future__ import annotations

from prefect import flow

from flows.common import Outcome, open_memory, per_namespace
from tasks.security import rotate_namespace


@flow(name="rotate_keys", persist_result=True)
def rotate_keys_flow(
    namespaces: list[str] | None = None, batch: int = 500, home: str | None = None
) -> Outcome:
    """``{namespace: {resealed, usage}}`` (usage: memories per key id in that namespace)."""
    with open_memory(home) as mem:
        return per_namespace(
            mem,
            namespaces,
            lambda m, ns: rotate_namespace(m, ns, batch),
            lambda r: {"resealed": r.resealed, "usage": r.usage},
        )
