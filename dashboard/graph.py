"""The memory graph around one memory: its links, and their links, out to a chosen depth.

Nodes are coloured by their community and sized by their PageRank, both of the namespace's
whole graph (``mem.graph``), computed once per change of the namespace (its newest change-log
entry) and principal, and cached."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.palette import preview, zone_colour
from stellar_core import Neighbourhood, Principal, StellarMemory

MAX_SHOWN = 80  # memories drawn at most


@dataclass(frozen=True)
class Analytics:
    """PageRank and community (0: the largest) of each memory of a namespace."""

    rank: dict[str, float]
    community: dict[str, int]


@st.cache_data(ttl=600, max_entries=32, show_spinner="Ranking the namespace's graph…")
def analytics(_mem: StellarMemory, namespace: str, who: str, version: int) -> Analytics:
    """The namespace's analytics as ``who`` may see them; ``version`` (its newest change)
    makes a change recompute them."""
    rank = dict(_mem.graph.centrality("pagerank", limit=100_000, namespace=namespace, principal=who))
    groups = _mem.graph.communities(namespace=namespace, principal=who)
    return Analytics(rank, {i: n for n, group in enumerate(groups) for i in group})


def namespace_analytics(mem: StellarMemory, namespace: str, who: Principal) -> Analytics:
    newest = mem.events(limit=1, namespace=namespace, principal=who)
    return analytics(mem, namespace, who.id, newest[0].seq if newest else 0)


def layout(hood: Neighbourhood) -> dict[str, tuple[float, float]]:
    """A radial tree: the centre in the middle, each hop on a ring further out, and each node
    in a slice of its parent's angle, as wide as the share of the leaves below it."""
    children: dict[str, list[str]] = {}
    for node, parent in hood.parents.items():
        children.setdefault(parent, []).append(node)

    @cache
    def leaves(node: str) -> int:
        return max(1, sum(leaves(c) for c in children.get(node, ())))

    at: dict[str, tuple[float, float]] = {}

    def place(node: str, start: float, end: float, hop: int) -> None:
        middle = (start + end) / 2
        at[node] = (hop * math.cos(middle), hop * math.sin(middle))
        if hop:  # at most a half circle, facing away from the centre
            half = min(end - start, math.pi) / 2
            start, end = middle - half, middle + half
        for child in children.get(node, ()):
            share = (end - start) * leaves(child) / leaves(node)
            place(child, start, start + share, hop + 1)
            start += share

    place(hood.centre, 0.0, 2 * math.pi, 0)
    return at


TOOLTIP = ["content:N", "zone:N", "community:N", alt.Tooltip("pagerank:Q", format=".4f"), "hops:Q", "id:N"]


def community_label(n: int | None) -> str:
    return "-" if n is None else f"#{n + 1}" if n < 10 else "other"


def chart(hood: Neighbourhood, facts: Analytics | None = None) -> alt.LayerChart | alt.FacetChart:
    """The neighbourhood drawn radially; with ``facts``, each memory coloured by community
    and sized by PageRank (relative to the highest shown), else by zone and importance."""
    at = layout(hood)
    ranks = {i: facts.rank.get(i, 0.0) for i in hood.nodes} if facts else {}
    top = max(ranks.values(), default=0.0) or 1.0
    nodes = pd.DataFrame(
        [
            {
                "x": at[i][0],
                "y": at[i][1],
                "zone": x.zone.value,
                "hops": hop,
                "importance": x.importance,
                "content": preview(x.content),
                "id": i,
                "community": community_label(facts.community.get(i)) if facts else "-",
                "pagerank": ranks.get(i, 0.0),
                "size": ranks.get(i, 0.0) / top if facts else x.importance,
            }
            for i, (x, hop) in hood.nodes.items()
        ],
        columns=["x", "y", "zone", "hops", "importance", "content", "id", "community", "pagerank", "size"],
    )
    edges = pd.DataFrame(
        [
            {
                "x": at[e.source_id][0],
                "y": at[e.source_id][1],
                "x2": at[e.target_id][0],
                "y2": at[e.target_id][1],
                "kind": e.kind,
                "weight": e.weight,
            }
            for e in hood.links
            if e.source_id in at and e.target_id in at
        ],
        columns=["x", "y", "x2", "y2", "kind", "weight"],
    )
    extent = max(hop for _, hop in hood.nodes.values()) + 0.6  # the centre in the middle
    centred = alt.Scale(domain=[-extent, extent])
    lines = (
        alt.Chart(edges)
        .mark_rule(opacity=0.6)
        .encode(
            x=alt.X("x:Q", axis=None, scale=centred),
            y=alt.Y("y:Q", axis=None, scale=centred),
            x2="x2:Q",
            y2="y2:Q",
            strokeDash=alt.StrokeDash("kind:N", title="Link"),
            strokeWidth=alt.StrokeWidth(
                "weight:Q", scale=alt.Scale(domain=[0, 1], range=[0.5, 4]), legend=None
            ),
            tooltip=["kind:N", "weight:Q"],
        )
    )
    dots = (
        alt.Chart(nodes)
        .mark_circle(stroke="white", strokeWidth=1, opacity=0.9)
        .encode(
            x="x:Q",
            y="y:Q",
            color=alt.Color("community:N", title="Community") if facts else zone_colour(),
            size=alt.Size("size:Q", scale=alt.Scale(domain=[0, 1], range=[60, 600]), legend=None),
            tooltip=TOOLTIP,
        )
    )
    ring = (
        alt.Chart(nodes[nodes["hops"] == 0])
        .mark_point(size=900, color="black", strokeWidth=2)
        .encode(x="x:Q", y="y:Q")
    )  # marks the centre
    return alt.layer(lines, dots, ring).properties(
        width=600, height=600, autosize=alt.AutoSizeParams(type="pad")
    )


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Memory graph")
    query = st.text_input("Centre on", placeholder="words from a memory (empty: the highest scored)")
    if query.strip():
        candidates = [
            h.memory for h in mem.recall(query, k=10, count=False, namespace=namespace, principal=who)
        ]
    else:
        candidates = mem.memories(limit=20, namespace=namespace, principal=who)
    if not candidates:
        st.info("No memories in this namespace yet.")
        return
    by_id = {x.id: x for x in candidates}
    centre = st.selectbox("Centre", list(by_id), format_func=lambda i: preview(by_id[i].content, 90))
    depth = st.slider("Hops", 1, 3, 2)
    hood = mem.graph.neighbourhood(
        centre, depth=depth, limit=MAX_SHOWN - 1, namespace=namespace, principal=who
    )
    st.caption(
        f"{len(hood.nodes)} memories, {len(hood.links)} links"
        + (f" (stopped at {MAX_SHOWN} memories)" if hood.truncated else "")
    )
    if not hood.links:
        st.info("This memory has no links yet: `mem.link(a, b, kind=...)` adds them.")
    facts = namespace_analytics(mem, namespace, who)
    st.altair_chart(chart(hood, facts), width="content")
    st.caption("Colour: community in the namespace's graph (Louvain); size: PageRank (links weighted).")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "from": preview(hood.nodes[e.source_id][0].content, 60),
                    "kind": e.kind,
                    "weight": e.weight,
                    "to": preview(hood.nodes[e.target_id][0].content, 60),
                }
                for e in hood.links
                if e.source_id in hood.nodes and e.target_id in hood.nodes
            ],
            columns=["from", "kind", "weight", "to"],
        ),
        hide_index=True,
    )
