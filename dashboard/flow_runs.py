"""Recent runs of the upkeep flows, read from the Prefect API (``PREFECT_API_URL``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from stellar_core import Principal, StellarMemory

SHOWN = 50


def api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def recent(limit: int = SHOWN) -> pd.DataFrame:
    """The newest flow runs due by now (scheduled future runs left out), newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    due = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC)))  # type: ignore[arg-type]  # (a pendulum DateTime is a datetime)
    with get_client(sync_client=True) as client:
        newest = FlowRunSort.EXPECTED_START_TIME_DESC
        runs = client.read_flow_runs(flow_run_filter=due, sort=newest, limit=limit)
        ids = list({r.flow_id for r in runs})
        flows = {f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))}
    rows: list[dict[str, Any]] = [
        {
            "flow": flows.get(r.flow_id, "?"),
            "run": r.name,
            "state": r.state_name,
            "started": r.start_time.strftime("%Y-%m-%d %H:%M:%S") if r.start_time else "",
            "seconds": round(r.total_run_time.total_seconds(), 1),
            "id": str(r.id),
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=["flow", "run", "state", "started", "seconds", "id"])


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Flow runs")
    url = api_url()
    if not url:
        st.info("Set `PREFECT_API_URL` to the Prefect server's API to see the flow runs here.")
        return
    try:
        runs = recent()
    except Exception as exc:  # the server is down or unreachable: the rest of the dashboard still works
        st.warning(f"The Prefect API at {url} did not answer: {exc}")
        return
    st.caption(f"The newest {len(runs)} runs at {url} (UTC); the Prefect UI has their logs.")
    st.dataframe(runs, hide_index=True, width="stretch")
