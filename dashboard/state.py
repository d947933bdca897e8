"""The one ``StellarMemory`` a dashboard process shares between its sessions."""

from __future__ import annotations

import streamlit as st

from stellar_core import Settings, StellarMemory


@st.cache_resource
def memory() -> StellarMemory:
    """Opened once per process from the ``STELLAR_*`` settings, as an agent of its own
    (``STELLAR_AGENT_ID``, else ``dashboard-<host>-<random>``): its edits are told apart
    from the flows' and the agents' in the change log."""
    settings = Settings()
    # create=False: a mistyped STELLAR_HOME is reported, not shown as a new, empty memory
    return StellarMemory(agent=settings.agent("dashboard"), settings=settings, create=False)
