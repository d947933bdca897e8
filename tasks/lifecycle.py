"""Lifecycle tasks, one namespace each: reorbit (rescore, rezone, forget, purge) and forgetting."""

from __future__ import annotations

from prefect import task

from stellar_core import ForgetReport, ReorbitReport, StellarMemory
from tasks.retry import TASK_OPTIONS, retry_on_transient

__all__ = ["forget_namespace", "reorbit_namespace", "retry_on_transient"]


@task(**TASK_OPTIONS)
def reorbit_namespace(mem: StellarMemory, namespace: str) -> ReorbitReport:
    """Rescore and rezone one namespace, forget idle Cloud memories, purge old tombstones."""
    return mem.reorbit(namespace=namespace)


@task(**TASK_OPTIONS)
def forget_namespace(mem: StellarMemory, namespace: str) -> ForgetReport:
    """Forget idle Cloud memories and purge old tombstones of one namespace."""
    return mem.forget_idle(namespace=namespace)
