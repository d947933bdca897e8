"""Counts of a namespace: memories, zones against their capacities, links, threads."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.palette import zone_colour
from stellar_core import Principal, Stats, StellarMemory, Zone, ZonePolicy


def zone_table(stats: Stats, policy: ZonePolicy) -> pd.DataFrame:
    """Per zone: memories now, the score threshold to enter it and its capacity."""
    return pd.DataFrame(
        {
            "zone": [z.value for z in Zone],
            "memories": [stats.zones[z] for z in Zone],
            "threshold": [policy.thresholds.get(z) for z in Zone],
            "capacity": [policy.capacities.get(z) for z in Zone],
        }
    )


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Statistics")
    stats = mem.stats(namespace=namespace, principal=who)
    cols = st.columns(5)
    cols[0].metric("Memories", f"{stats.memories:,}")
    cols[1].metric("Forgotten", f"{stats.forgotten:,}")
    cols[2].metric("Links", f"{stats.links:,}")
    cols[3].metric("Threads", f"{stats.threads:,}")
    cols[4].metric("Mean score", f"{stats.mean_score:.3f}")
    zones = zone_table(stats, mem.zone_policy(namespace, principal=who))
    bars = (
        alt.Chart(zones)
        .mark_bar()
        .encode(
            x=alt.X("zone:N", sort=[z.value for z in Zone], title=None),
            y=alt.Y("memories:Q", title="memories"),
            color=zone_colour(),
            tooltip=["zone:N", "memories:Q", "threshold:Q", "capacity:Q"],
        )
    )
    st.altair_chart(bars.properties(height=280), width="stretch")
    st.subheader("Zones")
    st.caption(
        "A memory enters a zone when its score reaches the threshold and the zone has room; Cloud is "
        "unbounded."
    )
    st.dataframe(zones, hide_index=True)
    st.subheader("Namespaces")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "namespace": ns,
                    "memories": (
                        stats if ns == namespace else mem.stats(namespace=ns, principal=who)
                    ).memories,
                }
                for ns in mem.namespaces(principal=who)[:100]
            ]
        ),
        hide_index=True,
    )
