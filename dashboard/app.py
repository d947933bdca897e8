"""The Stellar Memory dashboard: ``streamlit run dashboard/app.py``.

It opens the memory that the ``STELLAR_*`` settings name (the embedded default, or
PostgreSQL + Redis) and reads and edits it through ``stellar_core`` only. With access control
on it shows nothing until an API key signs the session in, and then acts as the key's
principal in every call; off, it acts as the settings' agent. Flow runs come from the Prefect
API that ``PREFECT_API_URL`` names.
"""

from __future__ import annotations

import streamlit as st

from dashboard import auth
from dashboard.state import memory
from dashboard.views import ADMIN_ONLY, VIEWS
from stellar_core import StellarError

st.set_page_config(page_title="Stellar Memory", page_icon="🪐", layout="wide")
try:
    mem = memory()
    who = auth.principal(mem)
    if who is None:
        auth.sign_in()  # the form, and the run ends
    # Those with memories (that ``who`` may read); without access control, the settings' first.
    spaces = mem.namespaces(principal=who) or ([] if mem.settings.access_control else [mem.namespace])
    views = [v for v in VIEWS if v not in ADMIN_ONLY or auth.is_admin(mem, who)]
except StellarError as exc:  # e.g. the database is down: say so instead of a traceback
    st.error(f"Cannot open the memory: {exc}")
    st.stop()

with st.sidebar:
    st.title("Stellar Memory")
    first = spaces.index(mem.namespace) if mem.namespace in spaces else 0
    namespace = st.selectbox("Namespace", spaces, index=first)
    view = st.radio("View", views)
    auth.account(mem, who)

if namespace is None:
    st.info(f"No namespace that `{who.id}` may read holds memories yet.")
    st.stop()
try:
    VIEWS[view](mem, namespace, who)
except StellarError as exc:  # PermissionDenied too: a reader's edit, a grant revoked meanwhile
    st.error(str(exc))
