"""In-memory vector index of one namespace.

Exact numpy search serves small namespaces and filtered queries. A namespace that reaches
``hnsw_min_rows`` also gets an HNSW graph (faiss), built off the query path by ``upkeep()``;
rows added since the graph was built are searched exactly and merged, so results never lag.
Rows are append-only; a removed row is masked out, and the graph is rebuilt once a fifth of
it is dead. Measured choice: see docs/decisions/0003-vector-index.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

_HNSW_M = 32
_EF_CONSTRUCTION = 64
_EF_SEARCH = 128
_ADD_CHUNK = 1024  # rows added to the graph per lock hold: keeps queries waiting < ~0.3 s


class VectorIndex:
    """Unit-length embeddings keyed by memory seq, with thread positions for context."""

    def __init__(self, dim: int, hnsw_min_rows: int) -> None:
        self.dim = dim
        self.hnsw_min_rows = hnsw_min_rows
        self.watermark = 0  # last change-log seq applied
        self.loaded = False  # filled from the database once (InProcessIndexes)
        self.loading = threading.Lock()
        self._lock = threading.RLock()
        self._building = threading.Lock()  # one build at a time (upkeep thread and warm())
        self._vecs = np.zeros((1024, dim), dtype=np.float32)
        self._n = 0
        self._alive = np.zeros(1024, dtype=bool)
        self._seq = np.zeros(1024, dtype=np.int64)
        self._row_of_seq: dict[int, int] = {}
        self._place: dict[int, tuple[str, int]] = {}  # seq -> (thread, position)
        self._at_place: dict[tuple[str, int], int] = {}  # (thread, position) -> seq
        self._hnsw: faiss.IndexHNSWFlat | None = None
        self._hnsw_rows = 0  # rows [0, _hnsw_rows) are in the graph
        self._dead_in_hnsw = 0

    def __len__(self) -> int:
        return len(self._row_of_seq)

    # --- writes -------------------------------------------------------------------------
    def upsert(
        self,
        seqs: Sequence[int],
        vectors: np.ndarray,
        places: Sequence[tuple[str, int] | None],
    ) -> None:
        """Add rows, replacing any row with the same seq."""
        with self._lock:
            self.remove(seqs)
            need = self._n + len(seqs)
            if need > len(self._vecs):
                cap = max(need, 2 * len(self._vecs))
                self._vecs = _grown(self._vecs, cap)
                self._alive = _grown(self._alive, cap)
                self._seq = _grown(self._seq, cap)
            rows = slice(self._n, need)
            self._vecs[rows] = vectors
            self._alive[rows] = True
            self._seq[rows] = seqs
            for i, (seq, place) in enumerate(zip(seqs, places, strict=True)):
                self._row_of_seq[int(seq)] = self._n + i
                if place is not None:
                    self._place[int(seq)] = place
                    self._at_place[place] = int(seq)
            self._n = need

    def remove(self, seqs: Iterable[int]) -> None:
        """Mask rows out; unknown seqs are ignored."""
        with self._lock:
            for seq in seqs:
                row = self._row_of_seq.pop(int(seq), None)
                if row is None:
                    continue
                self._alive[row] = False
                if row < self._hnsw_rows:
                    self._dead_in_hnsw += 1
                place = self._place.pop(int(seq), None)
                if place is not None and self._at_place.get(place) == seq:
                    del self._at_place[place]

    # --- reads --------------------------------------------------------------------------
    def search(self, query: np.ndarray, n: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top ``n`` (seq, cosine) for a unit query; ``allowed`` restricts to those seqs."""
        with self._lock:
            if allowed is not None:
                rows = np.fromiter(
                    (r for s in allowed if (r := self._row_of_seq.get(s)) is not None),
                    dtype=np.int64,
                )
                return self._exact(query, rows, n)
            if self._hnsw is None:
                return self._exact(query, None, n)
            # Over-fetch from the graph to make up for masked-out rows.
            sims, ids = self._hnsw.search(query[None, :], n + self._dead_in_hnsw // 8 + 8)
            hits = [
                (int(self._seq[i]), float(s))
                for i, s in zip(ids[0], sims[0], strict=True)
                if i >= 0 and self._alive[i]
            ]
            if len(hits) < min(n, self._hnsw_rows - self._dead_in_hnsw):
                return self._exact(query, None, n)  # removed rows crowded the graph's answer
            fresh = np.arange(self._hnsw_rows, self._n)
            hits += self._exact(query, fresh[self._alive[fresh]], n)
            hits.sort(key=lambda h: -h[1])
            return hits[:n]

    def similarities(self, query: np.ndarray, seqs: Sequence[int]) -> dict[int, float]:
        """Cosine of the query with each known seq."""
        with self._lock:
            known = [(s, r) for s in seqs if (r := self._row_of_seq.get(s)) is not None]
            if not known:
                return {}
            sims = self._vecs[[r for _, r in known]] @ query
            return {s: float(v) for (s, _), v in zip(known, sims, strict=True)}

    def all_similarities(self, query: np.ndarray) -> dict[int, float]:
        """Cosine of the query with every live row."""
        with self._lock:
            rows = np.flatnonzero(self._alive[: self._n])
            sims = self._vecs[rows] @ query
            return {int(s): float(v) for s, v in zip(self._seq[rows], sims, strict=True)}

    def around(self, query: np.ndarray, seqs: Iterable[int], reach: int) -> list[tuple[int, str, int, float]]:
        with self._lock:
            found: dict[int, tuple[str, int]] = {}
            for seq in seqs:
                place = self._place.get(seq)
                if place is None:
                    continue
                thread, pos = place
                for p in range(pos - reach, pos + reach + 1):
                    other = self._at_place.get((thread, p))
                    if other is not None:
                        found[other] = (thread, p)
            if not found:
                return []
            sims = self._vecs[[self._row_of_seq[s] for s in found]] @ query
            return [(s, t, p, float(c)) for (s, (t, p)), c in zip(found.items(), sims, strict=True)]

    def _exact(self, query: np.ndarray, rows: np.ndarray | None, n: int) -> list[tuple[int, float]]:
        """Brute force over ``rows`` (None: every live row)."""
        if rows is None:
            # One pass over the whole matrix beats gathering rows (which copies them).
            sims = self._vecs[: self._n] @ query
            sims[~self._alive[: self._n]] = -np.inf
            rows = np.arange(self._n)
            n = min(n, len(self))
        else:
            sims = self._vecs[rows] @ query
        if rows.size == 0 or n <= 0:
            return []
        top = np.argpartition(-sims, n - 1)[:n] if sims.size > n else np.arange(sims.size)
        top = top[np.argsort(-sims[top])]
        return [(int(self._seq[rows[i]]), float(sims[i])) for i in top]

    # --- graph upkeep (off the query path) -------------------------------------------------
    @property
    def has_graph(self) -> bool:
        """True once the HNSW graph exists."""
        return self._hnsw is not None

    def upkeep(self) -> None:
        """Build, extend or rebuild the HNSW graph as the namespace needs."""
        with self._building:
            self._build_graph()

    def _build_graph(self) -> None:
        if len(self) < self.hnsw_min_rows:
            return
        if self._hnsw is None or self._dead_in_hnsw > self._hnsw_rows // 5:
            self._rebuild()
        while self._hnsw_rows < self._n:
            with self._lock:
                end = min(self._n, self._hnsw_rows + _ADD_CHUNK)
                assert self._hnsw is not None
                self._hnsw.add(self._vecs[self._hnsw_rows : end])
                self._hnsw_rows = end

    def _rebuild(self) -> None:
        with self._lock:  # snapshot the live rows; the graph's ids will be their new row numbers
            n_before = self._n
            live = np.flatnonzero(self._alive[:n_before])
            vecs, seqs = self._vecs[live].copy(), self._seq[live].copy()
        import faiss  # on first use: most processes never build a graph

        graph = faiss.IndexHNSWFlat(self.dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = _EF_CONSTRUCTION
        graph.hnsw.efSearch = _EF_SEARCH
        graph.add(vecs)  # the slow part, done without the lock
        with self._lock:
            # Carry over what changed meanwhile: rows appended after the snapshot, and
            # snapshot rows removed or replaced since (they stay in the graph, masked).
            tail = [r for r in range(n_before, self._n) if self._alive[r]]
            tail_seqs, tail_vecs = self._seq[tail].copy(), self._vecs[tail].copy()
            tail_places = [self._place.get(int(s)) for s in tail_seqs]
            still = np.array(
                [self._row_of_seq.get(int(s)) == int(r) for s, r in zip(seqs, live, strict=True)],
                dtype=bool,
            )
            cap = max(1024, 2 * (len(seqs) + len(tail)))
            self._vecs, self._seq, self._alive = (
                _grown(vecs, cap),
                _grown(seqs, cap),
                _grown(still, cap),
            )
            self._row_of_seq = {int(s): i for i, s in enumerate(seqs) if still[i]}
            self._n = self._hnsw_rows = len(seqs)
            self._hnsw = graph
            self._dead_in_hnsw = int((~still).sum())
            if tail:
                self.upsert(tail_seqs.tolist(), tail_vecs, tail_places)


def _grown(arr: np.ndarray, cap: int) -> np.ndarray:
    out = np.zeros((cap, *arr.shape[1:]), dtype=arr.dtype)
    out[: len(arr)] = arr
    return out
