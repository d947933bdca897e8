"""Zone colours and orbit radii shared by the dashboard's charts."""

from __future__ import annotations

import altair as alt

from stellar_core import Zone

ZONE_COLOURS = {
    Zone.CORE: "#f5b700",
    Zone.INNER: "#ff7f0e",
    Zone.OUTER: "#2ca02c",
    Zone.BELT: "#1f77b4",
    Zone.CLOUD: "#9e9e9e",
}


def zone_colour() -> alt.Color:
    """One colour per zone, the same in every chart, Core to Cloud in the legend."""
    return alt.Color(
        "zone:N",
        scale=alt.Scale(domain=[z.value for z in Zone], range=list(ZONE_COLOURS.values())),
        sort=[z.value for z in Zone],
        title="Zone",
    )


def preview(text: str, chars: int = 120) -> str:
    """The start of a memory's content, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"
