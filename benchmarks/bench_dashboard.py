"""Dashboard render times: each view of the real app (Streamlit ``AppTest``) on a loaded memory.

    python -m benchmarks.bench_dashboard                          # SQLite, 100k memories
    python -m benchmarks.bench_dashboard --backend postgres --size 1000000

Loads ``--size`` synthetic memories (vectors precomputed: embedding is not measured) over
120 simulated days, links every tenth memory to the next, reorbits so the zones fill, then
renders each view ``--renders`` times and prints p50/p95 of the whole script run (what a
browser waits for after a click). Searches are not measured: they are ``recall``, which
bench_core measures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dashboard.state
from benchmarks.bench_core import Corpus, SyntheticEmbedder, database, load, log, percentiles_ms
from dashboard.views import VIEWS
from stellar_core import StellarMemory, SteppingClock

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def render_times(view: str, renders: int) -> list[float]:
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.sidebar.radio[0].set_value(view).run()  # the first render of the view: not timed
    if at.exception:
        raise RuntimeError(f"{view}: {at.exception}")
    out = []
    for _ in range(renders):
        t = time.perf_counter()
        at.run()
        out.append(time.perf_counter() - t)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--renders", type=int, default=20)
    args = ap.parse_args(argv)

    items, vectors = Corpus().memories(args.size, "d")
    embedder = SyntheticEmbedder([x["content"] for x in items], vectors)
    clock = SteppingClock()
    with (
        tempfile.TemporaryDirectory(prefix="stellar-bench-dash-") as tmp,
        database(args.backend, Path(tmp)) as db,
    ):
        mem = StellarMemory(db, embedder=embedder, clock=clock, background=False)
        log(f"loading {args.size:,} memories")
        load(mem, items, clock, span_days=120)
        ids = [x.id for x in mem.memories(limit=min(args.size, 10_000))]
        for a, b in zip(ids[::10], ids[1::10], strict=False):
            mem.link(a, b, kind="related")
        mem.reorbit()  # no warm(): the views do not search
        dashboard.state.memory = lambda: mem  # the app's one StellarMemory is this one
        print(f"\nDashboard render, {args.backend}, {args.size:,} memories ({args.renders} renders a view)")
        print(f"{'view':<14}{'p50 ms':>10}{'p95 ms':>10}")
        for view in VIEWS:
            p50, p95, _ = percentiles_ms(render_times(view, args.renders))
            print(f"{view:<14}{p50:>10.1f}{p95:>10.1f}")
        mem.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
