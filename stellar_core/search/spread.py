"""Spreading activation over links: how far a recall's graph expansion reaches, and how high.

Pure: the links come from ``around`` (the recall pipeline passes one indexed query per hop),
so the walk is tested on a plain dictionary of edges.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

# (from, to, weight) of the links of some memories, either way, each seen from that memory
Around = Callable[[Collection[str]], Iterable[tuple[str, str, float]]]


def spread(
    seeds: Mapping[str, float], around: Around, decay: float, floor: float, most: int
) -> dict[str, float]:
    """The memories that activation spreading from ``seeds`` (id -> activation) raises, with
    their activation.

    A memory reached over a link gets the activation of the one it was reached from times
    ``decay`` times the link's weight (capped at 1), and passes it on while it stays at or
    above ``floor``; it keeps the best that reaches it, if that beats what it holds already
    (a seed holds its own). Activation only falls along a path, so every memory raised is
    below the one that raised it, and the walk ends. At most ``most`` memories are raised:
    each hop keeps its strongest.
    """
    held = dict(seeds)
    raised: dict[str, float] = {}
    frontier = dict(seeds)
    while frontier and len(raised) < most:
        passing = {i: a * decay for i, a in frontier.items() if a * decay >= floor}
        if not passing:
            break
        reached: dict[str, float] = {}
        for src, dst, weight in around(list(passing)):
            a = passing[src] * min(1.0, max(0.0, weight))
            if a >= floor and a > max(held.get(dst, 0.0), reached.get(dst, 0.0)):
                reached[dst] = a
        frontier, new = {}, 0
        for i, a in sorted(reached.items(), key=lambda kv: (-kv[1], kv[0])):
            if i not in raised:  # raised again, it takes no more room
                if len(raised) + new >= most:
                    continue
                new += 1
            frontier[i] = a
        held.update(frontier)
        raised.update(frontier)
    return raised
