"""The zones as a solar system: each memory a body on its zone's orbit, sized by importance."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.palette import preview, zone_colour
from stellar_core import Memory, Principal, StellarMemory, Zone

ORBIT_POINTS = 120
BAND = 0.3  # how far a body sits inside (high score) or outside (low score) its orbit


def bodies(memories: Sequence[Memory]) -> pd.DataFrame:
    """One row per memory: its position (angle from its id, so it stays put between
    refreshes; radius from its zone, nearer the sun the higher its score) and its tooltip."""
    rows = []
    for x in memories:
        angle = 2 * math.pi * zlib.crc32(x.id.encode()) / 2**32
        radius = x.zone.rank + 1 + BAND * (1 - 2 * min(max(x.score, 0.0), 1.0))
        rows.append(
            {
                "x": radius * math.cos(angle),
                "y": radius * math.sin(angle),
                "zone": x.zone.value,
                "importance": x.importance,
                "score": round(x.score, 3),
                "recalls": x.recall_count,
                "content": preview(x.content),
                "id": x.id,
            }
        )
    columns = ["x", "y", "zone", "importance", "score", "recalls", "content", "id"]
    return pd.DataFrame(rows, columns=columns)


def orbits() -> pd.DataFrame:
    """Closed circles, one per zone, at radius 1 (Core) to 5 (Cloud)."""
    return pd.DataFrame(
        {
            "zone": z.value,
            "i": i,
            "x": (z.rank + 1) * math.cos(2 * math.pi * i / ORBIT_POINTS),
            "y": (z.rank + 1) * math.sin(2 * math.pi * i / ORBIT_POINTS),
        }
        for z in Zone
        for i in range(ORBIT_POINTS + 1)
    )


def chart(memories: Sequence[Memory]) -> alt.LayerChart | alt.FacetChart:
    extent = len(Zone) + 1
    axis = alt.Scale(domain=[-extent, extent])
    x = alt.X("x:Q", scale=axis, axis=None)
    y = alt.Y("y:Q", scale=axis, axis=None)
    rings = (
        alt.Chart(orbits())
        .mark_line(strokeDash=[2, 4], opacity=0.5)
        .encode(x, y, order="i:Q", detail="zone:N", color=zone_colour())
    )
    sun = (
        alt.Chart(pd.DataFrame({"x": [0.0], "y": [0.0]}))
        .mark_point(shape="circle", size=900, filled=True, color="#ffd34d")
        .encode(x, y)
    )
    planets = (
        alt.Chart(bodies(memories))
        .mark_circle(opacity=0.85, stroke="white", strokeWidth=0.5)
        .encode(
            x,
            y,
            color=zone_colour(),
            size=alt.Size("importance:Q", scale=alt.Scale(domain=[0, 1], range=[15, 400]), legend=None),
            tooltip=["content:N", "zone:N", "score:Q", "importance:Q", "recalls:Q", "id:N"],
        )
    )
    square = alt.AutoSizeParams(type="pad")  # Streamlit's default fit would squash the orbits
    return alt.layer(rings, sun, planets).properties(width=600, height=600, autosize=square)


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Solar system")
    per_zone = mem.settings.dashboard_orbit_sample
    stats = mem.stats(namespace=namespace, principal=who)
    shown = [
        x for z in Zone for x in mem.memories(zones=[z], limit=per_zone, namespace=namespace, principal=who)
    ]
    st.caption(
        f"{len(shown):,} of {stats.memories:,} memories: the {per_zone:,} highest scored of each zone. "
        "Nearer the sun is more alive; size is importance. Hover a body for its content."
    )
    st.altair_chart(chart(shown), width="content")
    st.dataframe(
        pd.DataFrame({"zone": [z.value for z in Zone], "memories": [stats.zones[z] for z in Zone]}),
        hide_index=True,
    )
