"""The live event feed: the namespace's change log, newest first, refreshed on a timer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard.palette import preview
from stellar_core import ChangeEvent, Principal, StellarError, StellarMemory

SHOWN = 100


def details(payload: dict[str, Any]) -> str:
    """What changed, in a line: new content, the fields an update set, a link's target."""
    if "content" in payload:
        return preview(str(payload["content"]), 80)
    if "target_id" in payload:
        return f"{payload.get('kind')} -> {payload['target_id']} ({payload.get('weight')})"
    return ", ".join(f"{k}={v}" for k, v in payload.items() if k not in ("hlc", "vector_clock", "updated_at"))


def table(found: Sequence[ChangeEvent]) -> pd.DataFrame:
    rows = [
        {
            "time": datetime.fromtimestamp(e.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "op": e.op,
            "agent": e.agent,
            "memory": e.memory_id,
            "details": details(e.payload),
            "seq": e.seq,
        }
        for e in found
    ]
    return pd.DataFrame(rows, columns=["time", "op", "agent", "memory", "details", "seq"])


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Events")
    live = st.toggle("Live", value=True, help="Refresh every few seconds")
    every = mem.settings.dashboard_refresh_seconds if live else None

    @st.fragment(run_every=every)
    def feed() -> None:
        if auth.principal(mem) != who:  # the key was revoked or expired since: to the sign-in
            st.rerun()
        try:  # a fragment's own reruns are outside the app's error handling
            found = mem.events(limit=SHOWN, namespace=namespace, principal=who)
        except StellarError as exc:
            st.error(str(exc))
            return
        st.caption(f"The newest {len(found)} changes (UTC), from every agent and flow.")
        st.dataframe(table(found), hide_index=True, width="stretch")

    feed()
