"""The maintenance flow: summarise -> dedup -> reorbit -> forget, each a subflow of its own."""

from __future__ import annotations

from typing import Any, cast

from prefect import Flow, flow
from prefect.client.schemas.objects import State
from prefect.states import Failed

from flows.common import Outcome
from flows.dedup import dedup_flow
from flows.forget import forget_flow
from flows.reorbit import reorbit_flow
from flows.summarise import summarise_flow


@flow(name="maintenance", persist_result=True)
def maintenance_flow(namespaces: list[str] | None = None, home: str | None = None) -> Outcome:
    """Summaries first (so dedup sees them and leaves them be), then merging, rezoning and
    forgetting. Each step reports per namespace; a failing step does not stop the next, and
    fails the run after the last."""
    steps: dict[str, Flow[..., Outcome]] = {
        "summarise": summarise_flow, "dedup": dedup_flow, "reorbit": reorbit_flow, "forget": forget_flow
    }  # fmt: skip
    out: dict[str, Any] = {}
    failed = []
    for name, step in steps.items():
        state = cast(State[Outcome], step(namespaces=namespaces, home=home, return_state=True))
        result = state.result(raise_on_failure=False)
        out[name] = result if isinstance(result, dict) else {"error": f"{type(result).__name__}: {result}"}
        if not state.is_completed():
            failed.append(name)
    if failed:
        return Failed(message=f"{', '.join(failed)} failed", data=out)
    return out
