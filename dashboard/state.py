"""The one ``StellarMemory`` a dashboard process shares between its sessions."""

from __future__ import annotations

import streamlit as st

from stellar_core import StellarMemory


@st.cache_resource
def memory() -> StellarMemory:
    """Opened once per process from the ``STELLAR_*`` settings."""
    return StellarMemory()
