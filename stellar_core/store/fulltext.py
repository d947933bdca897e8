"""What goes into the full-text index: each memory's text and, for a memory in a thread, its
neighbours' text in a separate, down-weighted column (a fact is often stated in reply to a
question whose words the reply lacks). Rewritten whenever a memory or a neighbour changes."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from stellar_core.store.dialect import Dialect, TextRows
from stellar_core.store.schema import memories


def in_spans(
    conn: sa.Connection, namespace: str, places: Iterable[tuple[str, int]], reach: int
) -> list[tuple[int, str, int, str]]:
    """(seq, thread, position, text) of live memories within ``reach`` of the places (the
    text the index holds: content, or an encrypted memory's keyed words)."""
    bounds: dict[str, tuple[int, int]] = {}
    for t, p in places:
        lo, hi = bounds.get(t, (p, p))
        bounds[t] = (min(lo, p), max(hi, p))
    out: list[tuple[int, str, int, str]] = []
    items = list(bounds.items())
    for i in range(0, len(items), 900):
        chunk = items[i : i + 900]
        params: dict[str, Any] = {"ns": namespace}
        for j, (t, (lo, hi)) in enumerate(chunk):
            params.update({f"t{j}": t, f"lo{j}": lo - reach, f"hi{j}": hi + reach})
        for seq, th, pos, text, gone in conn.execute(_spans_sql(len(chunk)), params):
            if gone is None:
                out.append((seq, th, pos, text))
    return out


@functools.lru_cache(maxsize=64)
def _spans_sql(n: int) -> sa.TextClause:
    """One (namespace, thread, position) index range per thread, in one statement.

    Plain SQL: SQLAlchemy would compile a VALUES list anew on every call. No "deleted_at IS
    NULL" in it: that lets SQLite pick the partial dedup index and scan whole namespaces.
    """
    spans = ", ".join(f"(:t{j}, :lo{j}, :hi{j})" for j in range(n))
    return sa.text(
        f"WITH spans (t, lo, hi) AS (VALUES {spans}) "
        "SELECT m.seq, m.thread, m.position, COALESCE(m.search_text, m.content), m.deleted_at FROM spans "
        "JOIN memories m ON m.namespace = :ns AND m.thread = spans.t "
        "AND m.position BETWEEN spans.lo AND spans.hi"
    )


def neighbours(
    conn: sa.Connection, namespace: str, places: Iterable[tuple[str, int]], window: int
) -> list[int]:
    """Seqs of live memories within ``window`` positions of the (thread, position) places."""
    if window <= 0:
        return []
    return [seq for seq, *_ in in_spans(conn, namespace, places, window)]


def reindex(
    conn: sa.Connection,
    dialect: Dialect,
    namespace: str,
    seqs: Iterable[int],
    window: int,
) -> None:
    """(Re)write the full-text rows of ``seqs`` and of their thread neighbours."""
    seqs = list(seqs)
    if not seqs:
        return
    m = memories.c
    rows: list[tuple[int, str | None, int | None, str]] = []
    for i in range(0, len(seqs), 900):  # by primary key only; the rest is checked here
        text = sa.func.coalesce(m.search_text, m.content)  # an encrypted memory's: keyed words
        q = sa.select(m.seq, m.thread, m.position, text, m.namespace, m.deleted_at)
        for seq, th, pos, text, ns, gone in conn.execute(q.where(m.seq.in_(seqs[i : i + 900]))):
            if ns == namespace and gone is None:
                rows.append((seq, th, pos, text))
    threaded = [(t, p) for _, t, p, _ in rows if t is not None and p is not None]
    by_place: dict[tuple[str, int], tuple[int, str]] = {}
    if threaded and window > 0:
        for seq, t, p, content in in_spans(conn, namespace, threaded, 2 * window):
            by_place[(t, p)] = (seq, content)
    # Every row whose context window covers a touched row must be rewritten.
    targets: dict[int, tuple[str | None, int | None]] = {s: (t, p) for s, t, p, _ in rows}
    texts = {s: c for s, _, _, c in rows}
    for t, p in threaded:
        for d in range(-window, window + 1):
            hit = by_place.get((t, p + d))
            if hit is not None and hit[0] not in targets:
                targets[hit[0]] = (t, p + d)
    out = []
    for seq, (th, pos) in targets.items():
        near = []
        if th is not None and pos is not None:
            places = ((th, pos + d) for d in range(-window, window + 1) if d)
            near = [by_place[x][0] for x in places if x in by_place]
        out.append((seq, near))
    texts.update(by_place.values())
    dialect.text_index_put(conn, namespace, TextRows(out, texts))
