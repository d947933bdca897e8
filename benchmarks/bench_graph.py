"""Graph analytics: how long ``mem.graph`` takes on a namespace of many memories and links.

Run from the repository root::

    python -m benchmarks.bench_graph                      # 10,000 memories, 30,000 links, SQLite
    python -m benchmarks.bench_graph --size 50000 --links 150000

Memories and links are loaded through ``import_`` (an export document, vectors from a
text-seeded random embedder: embedding costs next to nothing); links join random pairs,
a third of them in small clusters. Printed: the bulk read of the graph (``load``), PageRank,
degree centrality, Louvain communities, one shortest path and the GraphML export.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stellar_core import StellarMemory

DIM = 384


class TextSeededEmbedder:
    """A unit vector per text, seeded by the text: no meaning, no cost."""

    model = "bench/text-seeded"
    dim = DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest())
            row = np.random.default_rng(seed).standard_normal(DIM)
            out[i] = row / np.linalg.norm(row)
        return out


def document(size: int, n_links: int, rng: np.random.Generator) -> dict[str, Any]:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(size)]
    memories = [
        {"id": i, "namespace": "bench", "content": f"memory {n} about topic {n % 97}", "content_hash": "",
         "importance": 0.5, "pinned": False, "recall_count": n % 5, "created_at": 1e9 + n,
         "updated_at": 1e9 + n, "last_recalled_at": None, "last_access_at": 1e9 + n, "zone": "outer",
         "score": 0.4, "tags": [f"t{n % 7}"], "metadata": {}, "source": None, "thread": None,
         "position": None, "encrypted": False, "key_id": None, "origin_agent": "bench",
         "hlc": "", "vector_clock": {}, "deleted_at": None}
        for n, i in enumerate(ids)
    ]  # fmt: skip
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_links:
        a = int(rng.integers(size))
        b = (a + int(rng.integers(1, 20))) % size if len(pairs) % 3 == 0 else int(rng.integers(size))
        if a != b:
            pairs.add((a, b))
    links = [{"source_id": ids[a], "target_id": ids[b], "kind": "related",
              "weight": float(rng.uniform(0.1, 1)), "created_at": 1e9} for a, b in sorted(pairs)]  # fmt: skip
    return {"format": "stellar-memory-export", "version": 1, "namespace": "bench",
            "memories": memories, "links": links}  # fmt: skip


def timed(label: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    out = fn()
    print(f"{label:<28}{(time.perf_counter() - started) * 1000:9.0f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--links", type=int, default=30_000)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        mem = StellarMemory(Path(tmp) / "graph.db", namespace="bench", embedder=TextSeededEmbedder(),
                            background=False)  # fmt: skip
        with mem:
            doc = document(args.size, args.links, rng)
            report = timed("import", lambda: mem.import_(doc))
            print(f"{report.imported} memories, {report.links} links")
            g = timed("load (bulk read)", mem.graph.load)
            timed("load again", mem.graph.load)
            print(f"graph: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")
            timed("centrality pagerank", lambda: mem.graph.centrality("pagerank"))
            timed("centrality degree", lambda: mem.graph.centrality("degree"))
            groups = timed("communities (louvain)", mem.graph.communities)
            print(f"{len(groups)} communities, largest {len(groups[0])}")
            ids = list(g.nodes)
            timed("path", lambda: mem.graph.path(ids[0], ids[-1]))
            timed("export GraphML", lambda: mem.graph.export_graphml(io.BytesIO()))


if __name__ == "__main__":
    main()
