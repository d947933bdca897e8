"""Find memories (recall, or a page by score) and edit or forget one of them."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from dashboard.palette import preview
from stellar_core import Memory, Principal, StellarError, StellarMemory, snippet

PAGE = 50
COLUMNS = ["content", "source", "zone", "score", "importance", "recalls", "tags", "pinned", "id"]


def table(found: Sequence[Memory], relevance: Sequence[float] | None = None, query: str = "") -> pd.DataFrame:
    """A row per memory; for a search, the part of each that matches the query."""
    rows = [
        {
            "content": snippet(x.content, query, 120) if query else preview(x.content),
            "source": x.origin,
            "zone": x.zone.value,
            "score": round(x.score, 3),
            "importance": x.importance,
            "recalls": x.recall_count,
            "tags": ", ".join(x.tags),
            "pinned": x.pinned,
            "id": x.id,
        }
        for x in found
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if relevance is not None:
        frame.insert(0, "relevance", [round(r, 3) for r in relevance])
    return frame


def done(message: str) -> None:
    """Show the page again with the change in it, and say what was done."""
    st.session_state["browser_done"] = message
    st.rerun()


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Memories")
    if message := st.session_state.pop("browser_done", None):
        st.success(message)
    query = st.text_input("Search", placeholder="a question or words (empty: all, highest score first)")
    if query.strip():
        hits = mem.recall(query, k=PAGE, count=False, namespace=namespace, principal=who)
        found, relevance = [h.memory for h in hits], [h.relevance for h in hits]
    else:
        page = st.number_input("Page", min_value=1, value=1, step=1)
        found = mem.memories(limit=PAGE, offset=(int(page) - 1) * PAGE, namespace=namespace, principal=who)
        relevance = None
    st.dataframe(table(found, relevance, query.strip()), hide_index=True, width="stretch")
    if not found:
        st.info("Nothing found.")
        return

    by_id = {x.id: x for x in found}
    chosen = st.selectbox("Edit or forget", list(by_id), format_func=lambda i: preview(by_id[i].content, 90))
    x = by_id[chosen]
    with st.form(f"edit-{x.id}"):
        content = st.text_area("Content", x.content, height=150)
        importance = st.slider("Importance", 0.0, 1.0, float(x.importance), 0.05)
        pinned = st.checkbox("Pinned (never forgotten)", x.pinned)
        tags = st.text_input("Tags (comma separated)", ", ".join(x.tags))
        st.caption(f"id `{x.id}` · zone {x.zone.value} · score {x.score:.3f} · {x.recall_count} recalls")
        save = st.form_submit_button("Save")
    if save:
        try:
            mem.update(
                x.id,
                content=content if content != x.content else None,
                importance=importance,
                pinned=pinned,
                tags=[t.strip() for t in tags.split(",") if t.strip()],
                namespace=namespace,
                principal=who,
            )
        except StellarError as exc:  # e.g. empty content, or a reader: nothing was changed
            st.error(f"Not saved: {exc}")
        else:
            done("Saved.")
    # Forgetting asks first: the chosen memory is the top hit until someone picks another.
    if st.session_state.get("forget_asked") != x.id:
        if st.button("Forget this memory…", type="secondary"):
            st.session_state["forget_asked"] = x.id
            st.rerun()
        return
    st.warning(f"Forget “{preview(x.content, 90)}”? Recall and get stop returning it; it cannot be undone.")
    yes, no = st.columns(2)
    if no.button("Cancel"):
        st.session_state.pop("forget_asked", None)
        st.rerun()
    if yes.button("Forget it", type="primary"):
        st.session_state.pop("forget_asked", None)
        try:
            mem.forget(x.id, namespace=namespace, principal=who)
        except StellarError as exc:
            st.error(f"Not forgotten: {exc}")
        else:
            done("Forgotten: recall and get no longer return it.")
