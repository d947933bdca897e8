"""Security tasks: key rotation, one namespace each."""

from __future__ import annotations

from prefect import task

from stellar_core import Rotation, StellarMemory
from tasks.retry import TASK_OPTIONS

__all__ = ["rotate_namespace"]


@task(**TASK_OPTIONS)
def rotate_namespace(mem: StellarMemory, namespace: str, batch: int = 500) -> Rotation:
    """Seal one namespace's encrypted memories (and their change events) with the primary key."""
    return mem.security.rotate_keys(namespace=namespace, batch=batch)
