"""Who the dashboard acts as: with access control on, the principal of the API key the
operator signs in with; off, the dashboard's own agent (as before access control).

The key lives in this browser session's state only (never in the URL, a log or a message),
and is checked again every ``grants_refresh_seconds``: a key revoked or expired meanwhile
stops working here as soon as a revoked grant does.
"""

from __future__ import annotations

import time
from typing import NoReturn

import streamlit as st

from stellar_core import PermissionDenied, Principal, StellarMemory

KEY, WHO, CHECKED, ADMIN, REFUSED = "auth_key", "auth_who", "auth_checked", "auth_admin", "auth_refused"


def principal(mem: StellarMemory) -> Principal | None:
    """Who this session acts as; None: nobody is signed in (show ``sign_in``)."""
    if not mem.settings.access_control:
        return mem.principal
    state = st.session_state
    if KEY not in state:
        return None
    if time.monotonic() - state.get(CHECKED, -float("inf")) >= mem.settings.grants_refresh_seconds:
        try:
            who = mem.security.authenticate(state[KEY])
        except PermissionDenied as exc:  # unknown, revoked or expired: says which, never the key
            sign_out()
            state[REFUSED] = f"Not signed in: {exc}."
            return None
        state[WHO], state[CHECKED] = who, time.monotonic()
    found: Principal = state[WHO]
    return found


def sign_in() -> NoReturn:
    """The sign-in form, and nothing else of the page (ends the script run)."""
    st.title("Stellar Memory")
    if refused := st.session_state.pop(REFUSED, None):
        st.error(refused)
    with st.form("sign-in", clear_on_submit=True):  # cleared: the key stays in no widget
        key = st.text_input("API key", type="password", placeholder="stk_…")
        if st.form_submit_button("Sign in") and key.strip():
            st.session_state[KEY] = key.strip()
            st.rerun()
    st.caption("Access control is on: sign in with an API key (`mem.security.create_api_key`).")
    st.stop()


def sign_out() -> None:
    """Forget the key and everything this session did (searches, choices) with it."""
    for name in list(st.session_state):
        del st.session_state[name]


def is_admin(mem: StellarMemory, who: Principal) -> bool:
    """Whether ``who`` may read the audit log. Asked once per sign-in, as every refusal is an
    audit record of its own; a right lost since is refused in the Audit view, with an error."""
    if not mem.settings.access_control:
        return True  # the dashboard's own agent: the implicit admin
    if ADMIN not in st.session_state:
        try:
            mem.security.audit(limit=1, principal=who)
        except PermissionDenied:
            st.session_state[ADMIN] = False
        else:
            st.session_state[ADMIN] = True
    admin: bool = st.session_state[ADMIN]
    return admin


def account(mem: StellarMemory, who: Principal) -> None:
    """The sidebar's line on who acts, and the sign-out button."""
    if not mem.settings.access_control:
        st.caption(f"Acting as agent `{who.id}`")
        return
    st.caption(f"Signed in as `{who.id}`")
    if st.button("Sign out"):
        sign_out()
        st.rerun()
