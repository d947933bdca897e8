"""The audit log, for admins: the newest records of every namespace, and a check of the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from stellar_core import Principal, StellarMemory

SHOWN = 200
COLUMNS = ["seq", "time", "principal", "action", "namespace", "outcome", "memories", "detail", "hash"]


def table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "seq": r["seq"],
            "time": datetime.fromtimestamp(r["at"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "principal": r["principal"],
            "action": r["action"],
            "namespace": r["namespace"] or "",
            "outcome": r["outcome"],
            "memories": ", ".join(r["memory_ids"] or ()),
            "detail": r["detail"] or "",
            "hash": r["hash"][:12],  # enough to compare with a copy kept elsewhere
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Audit log")
    if not mem.settings.audit_log:
        st.info("The audit log is off: `STELLAR_AUDIT_LOG=true` records every access, reads too.")
        return
    if st.button("Verify chain"):
        check = mem.security.verify_audit(principal=who)
        if check.intact:
            st.success(f"The chain is intact, {check.checked:,} records.")
        elif check.first_bad is None:
            st.error(f"The chain is broken after {check.checked:,} sound records: {check.problem}.")
        else:
            st.error(f"Record {check.first_bad} breaks the chain: {check.problem}.")
    found = mem.security.audit(limit=SHOWN, principal=who)
    everyone = "everyone"
    chosen = st.selectbox("Principal", [everyone, *sorted({r["principal"] for r in found})])
    shown = found if chosen == everyone else [r for r in found if r["principal"] == chosen]
    whose = "" if chosen == everyone else f", {len(shown)} of them by {chosen}"
    st.caption(f"The newest {len(found)} records (UTC) of every namespace{whose}; never any content.")
    st.dataframe(table(shown), hide_index=True, width="stretch")
