"""Lifecycle tasks: reorbit (rescore, rezone, forget, purge) of one namespace."""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from stellar_core import ReorbitReport, StellarMemory, TransientError


def retry_on_transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry only errors that can succeed on a second try (a locked database, a network blip).

    Prefect calls this with ``(task, task_run, state)`` when a run fails; ``state.result()``
    re-raises the run's exception. It must be a plain function: Prefect calls nothing else.
    """
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,  # the inputs hold an open StellarMemory: nothing to hash or cache
)
def reorbit_namespace(mem: StellarMemory, namespace: str) -> ReorbitReport:
    """Rescore and rezone one namespace, forget idle Cloud memories, purge old tombstones."""
    return mem.reorbit(namespace=namespace)
