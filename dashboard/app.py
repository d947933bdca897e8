"""The Stellar Memory dashboard: ``streamlit run dashboard/app.py``.

It opens the memory that the ``STELLAR_*`` settings name (the embedded default, or
PostgreSQL + Redis) and reads and edits it through ``stellar_core`` only, acting as the
settings' agent. Flow runs come from the Prefect API that ``PREFECT_API_URL`` names.
"""

from __future__ import annotations

import streamlit as st

from dashboard.state import memory
from dashboard.views import VIEWS
from stellar_core import StellarError

st.set_page_config(page_title="Stellar Memory", page_icon="🪐", layout="wide")
try:
    mem = memory()
    spaces = mem.namespaces() or [mem.namespace]  # those with memories; the settings' first
except StellarError as exc:  # e.g. the database is down: say so instead of a traceback
    st.error(f"Cannot open the memory: {exc}")
    st.stop()

with st.sidebar:
    st.title("Stellar Memory")
    first = spaces.index(mem.namespace) if mem.namespace in spaces else 0
    namespace = st.selectbox("Namespace", spaces, index=first)
    view = st.radio("View", list(VIEWS))
    st.caption(f"Acting as agent `{mem.principal.id}`")

try:
    VIEWS[view](mem, namespace)
except StellarError as exc:
    st.error(str(exc))
