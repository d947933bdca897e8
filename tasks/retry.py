"""The retry policy every Stellar task shares: retry what can succeed on a second try, only."""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from stellar_core import TransientError


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


# The inputs hold an open StellarMemory: nothing to hash or cache.
TASK_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": retry_on_transient,
    "cache_policy": NO_CACHE,
}
