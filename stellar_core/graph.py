"""``mem.graph``: a namespace's memories and links as a networkx graph, and analytics on it.

- ``load``: the live memories (nodes) and links (edges keyed by kind) as a ``MultiDiGraph``,
  read in bulk (a few queries, not one per memory).
- ``centrality`` (PageRank weighted by link weight, or degree), ``communities`` (Louvain on
  the undirected weighted graph, seeded), ``path`` (fewest links, either direction).
- ``export_graphml`` / ``graphml``: GraphML that ``networkx.read_graphml`` reads back with
  every attribute and its type.

Every verb is a read of the namespace (``get``: a reader may), admitted and audited by the
engine; the audit names the memories the caller is given. The algorithms below the class are
pure functions of a graph. networkx is imported on first use: an agent that only stores and
recalls does not load it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.engine import Engine
from stellar_core.errors import EncryptionError, NotFoundError, ValidationError
from stellar_core.models import Link, Memory, Who
from stellar_core.store import edges
from stellar_core.store.records import live_memory

if TYPE_CHECKING:
    import networkx as nx

CENTRALITY = ("pagerank", "degree")
DIRECTIONS = ("out", "in", "both")
MAX_HOOD = 10_000  # memories a neighbourhood reaches at most


@dataclass(frozen=True)
class Neighbourhood:
    """The memories within some hops of one, and the links between them (``neighbourhood``)."""

    centre: str
    nodes: dict[str, tuple[Memory, int]]  # id -> (memory, hops from the centre), nearest first
    parents: dict[str, str]  # id -> the memory it was first reached from (a tree to draw)
    links: list[Link]
    truncated: bool  # stopped at the limit: there is more


SEALED = "[encrypted]"  # the content of an encrypted memory this process holds no key for
# Characters XML 1.0 cannot carry (a memory may hold them; GraphML would be unreadable).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Graph:
    """Graph analytics over one open memory (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, *, namespace: str | None = None, principal: Who = None) -> nx.MultiDiGraph:
        """The namespace's live memories and links. Nodes: memory ids, with ``content``
        (decrypted where a key is configured, else ``[encrypted]``), ``zone``, ``importance``,
        ``score``, ``recall_count``, ``created_at``, ``tags`` (comma-joined), ``thread`` ("" for
        none) and ``encrypted``; edges keyed by kind, with ``kind``, ``weight`` and
        ``created_at``. The graph's ``namespace`` attribute names the namespace."""
        with self._engine.admitted("get", namespace, principal) as a:
            g = self._read(a.namespace, content=True)
            a.saw(g.nodes)
        return g

    def neighbourhood(
        self,
        memory_id: str,
        *,
        depth: int = 1,
        limit: int = 50,
        direction: str = "both",
        kind: str | None = None,
        namespace: str | None = None,
        principal: Who = None,
    ) -> Neighbourhood:
        """Breadth first from a memory over its links (``direction`` and ``kind`` as in
        ``mem.links``), out to ``depth`` hops and at most ``limit`` memories besides it, read in
        one snapshot; ``NotFoundError`` if the memory is not live in the namespace."""
        if direction not in DIRECTIONS:
            raise ValidationError("direction must be 'out', 'in' or 'both'")
        memory_id = check.memory_id(memory_id)
        depth, limit = check.int_in_range(depth, "depth", 10), check.int_in_range(limit, "limit", MAX_HOOD)
        kind = check.link_kind(kind) if kind is not None else None
        with self._engine.reading("get", namespace, principal) as r:
            ns = r.namespace
            nodes = {memory_id: (live_memory(r.conn, ns, memory_id)[1], 0)}
            parents: dict[str, str] = {}
            found: dict[tuple[str, str, str], Link] = {}
            frontier, truncated = [memory_id], False
            for hop in range(1, depth + 1):
                reached: list[str] = []
                for node in frontier:
                    for e in edges.around(r.conn, ns, node, direction, kind):  # live ends only
                        other = e.target_id if e.source_id == node else e.source_id
                        if other not in nodes:
                            if len(nodes) > limit:
                                truncated = True
                                continue
                            nodes[other] = (live_memory(r.conn, ns, other)[1], hop)
                            parents[other] = node
                            reached.append(other)
                        found[(e.source_id, e.target_id, e.kind)] = e
                frontier = reached
            r.saw(nodes)
        opened = self._engine.opened(x for x, _ in nodes.values())
        hood = {x.id: (x, hops) for x, (_, hops) in zip(opened, nodes.values(), strict=True)}
        return Neighbourhood(memory_id, hood, parents, list(found.values()), truncated)

    def centrality(
        self, kind: str = "pagerank", *, limit: int = 20, namespace: str | None = None, principal: Who = None
    ) -> list[tuple[str, float]]:
        """The ``limit`` most central memories, best first, as (id, score): ``pagerank`` (links
        weighted by their weight; scores sum to 1 over the namespace) or ``degree`` (links in
        and out, as a share of the other memories)."""
        if kind not in CENTRALITY:
            raise ValidationError(f"centrality kind must be one of {', '.join(CENTRALITY)}, not {kind!r}")
        limit = check.int_in_range(limit, "limit", 100_000)
        with self._engine.admitted("get", namespace, principal) as a:
            ranked = centrality(self._read(a.namespace), kind, limit)
            a.saw(i for i, _ in ranked)
        return ranked

    def communities(
        self, *, seed: int = 0, namespace: str | None = None, principal: Who = None
    ) -> list[list[str]]:
        """Groups of densely linked memories (Louvain), largest first; every memory is in one
        (an unlinked one alone). The same ``seed`` gives the same answer."""
        seed = check.int_in_range(seed, "seed", 2**32 - 1, least=0)
        with self._engine.admitted("get", namespace, principal) as a:
            groups = communities(self._read(a.namespace), seed)
            a.saw(i for group in groups for i in group)
        return groups

    def path(
        self, source_id: str, target_id: str, *, namespace: str | None = None, principal: Who = None
    ) -> list[str]:
        """The shortest chain of links (followed either way) from one memory to another, both
        ends included; ``NotFoundError`` if either is not a live memory of the namespace or no
        chain joins them."""
        source_id, target_id = check.memory_id(source_id), check.memory_id(target_id)
        with self._engine.admitted("get", namespace, principal) as a:
            found = shortest_path(self._read(a.namespace), source_id, target_id)
            a.saw(found)
        return found

    def export_graphml(
        self, destination: str | Path | IO[bytes], *, namespace: str | None = None, principal: Who = None
    ) -> nx.MultiDiGraph:
        """Write the namespace's graph (``load``) as GraphML to a file or binary stream;
        returns the graph written."""
        g = self.load(namespace=namespace, principal=principal)
        write_graphml(g, destination)
        return g

    def graphml(self, *, namespace: str | None = None, principal: Who = None) -> str:
        """The namespace's graph (``load``) as GraphML text."""
        buffer = io.BytesIO()
        write_graphml(self.load(namespace=namespace, principal=principal), buffer)
        return buffer.getvalue().decode("utf-8")

    def _read(self, namespace: str, *, content: bool = False) -> nx.MultiDiGraph:
        """The graph of a namespace (for a call admitted already); ``content``: with each
        memory's text (the algorithms need none, so nothing is decrypted for them)."""
        with self._engine.snapshot() as conn:
            nodes, tags, edges = reads.graph_rows(conn, namespace)
        texts = self._texts(namespace, nodes) if content else None
        return build(namespace, nodes, tags, edges, texts)

    def _texts(self, namespace: str, nodes: Iterable[Any]) -> dict[str, str]:
        """Each memory's content as a caller sees it: decrypted where this process holds its
        key, ``[encrypted]`` where it does not (never the ciphertext)."""
        cipher, out = self._engine.cipher, {}
        for r in nodes:
            text = r.content
            if r.encrypted:
                try:
                    text = cipher.open(text, namespace, r.id) if cipher is not None else SEALED
                except EncryptionError:
                    text = SEALED
            out[r.id] = text
        return out


# --- the pure part: graphs in, answers out -------------------------------------------------------
def _networkx() -> Any:
    import networkx

    return networkx


def build(
    namespace: str,
    nodes: Iterable[Any],
    tags: dict[str, list[str]],
    edges: Iterable[tuple[str, str, str, float, float]],
    texts: dict[str, str] | None = None,
) -> nx.MultiDiGraph:
    """A ``MultiDiGraph`` from node rows (id, zone, importance, score, recall_count,
    created_at, thread, encrypted), tags by id, (source, target, kind, weight, created_at)
    edges and, optionally, each node's text."""
    g = _networkx().MultiDiGraph(namespace=namespace)
    for r in nodes:
        attrs: dict[str, Any] = {
            "zone": r.zone, "importance": float(r.importance), "score": float(r.score),
            "recall_count": int(r.recall_count), "created_at": float(r.created_at),
            "tags": ",".join(sorted(tags.get(r.id, ()))), "thread": r.thread or "",
            "encrypted": bool(r.encrypted),
        }  # fmt: skip
        if texts is not None:
            attrs["content"] = texts[r.id]
        g.add_node(r.id, **attrs)
    g.add_edges_from(
        (s, t, k, {"kind": k, "weight": float(w), "created_at": float(at)}) for s, t, k, w, at in edges
    )
    return g


def centrality(g: nx.MultiDiGraph, kind: str = "pagerank", limit: int = 20) -> list[tuple[str, float]]:
    """The ``limit`` most central nodes, best first (ties by id)."""
    nx = _networkx()
    if g.number_of_nodes() == 0:
        return []
    scores = nx.pagerank(g, weight="weight") if kind == "pagerank" else nx.degree_centrality(g)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(i, float(v)) for i, v in ranked[:limit]]


def undirected(g: nx.MultiDiGraph) -> nx.Graph:
    """The graph with directions and kinds dropped: one edge per linked pair, weighing the
    sum of the weights of the links between them."""
    u = _networkx().Graph()
    u.add_nodes_from(g.nodes)
    for s, t, w in g.edges(data="weight"):
        if s == t:
            continue
        u.add_edge(s, t, weight=u.get_edge_data(s, t, {"weight": 0.0})["weight"] + w)
    return u


def communities(g: nx.MultiDiGraph, seed: int = 0) -> list[list[str]]:
    """Louvain communities of the undirected weighted graph: each sorted, largest first
    (ties by their first id)."""
    if g.number_of_nodes() == 0:
        return []
    found = _networkx().community.louvain_communities(undirected(g), weight="weight", seed=seed)
    return sorted((sorted(c) for c in found), key=lambda c: (-len(c), c[0]))


def community_of(groups: Iterable[Iterable[str]]) -> dict[str, int]:
    """Node -> the index of its community (0: the largest)."""
    return {i: n for n, group in enumerate(groups) for i in group}


def shortest_path(g: nx.MultiDiGraph, source: str, target: str) -> list[str]:
    """Fewest links from ``source`` to ``target``, following links either way."""
    nx = _networkx()
    for end in (source, target):
        if end not in g:
            raise NotFoundError(f"no memory {end!r} in namespace {g.graph.get('namespace')!r}")
    try:
        return [str(i) for i in nx.shortest_path(g.to_undirected(as_view=True), source, target)]
    except nx.NetworkXNoPath:
        raise NotFoundError(f"no chain of links joins {source} and {target}") from None


def write_graphml(g: nx.MultiDiGraph, destination: str | Path | IO[bytes]) -> None:
    """GraphML of ``g`` (text attributes without the characters XML cannot carry)."""
    nx = _networkx()
    if any(isinstance(v, str) and _NOT_XML.search(v) for _, d in g.nodes(data=True) for v in d.values()):
        g = g.copy()
        for _, d in g.nodes(data=True):
            for k, v in d.items():
                if isinstance(v, str):
                    d[k] = _NOT_XML.sub("\ufffd", v)
    nx.write_graphml(g, destination.as_posix() if isinstance(destination, Path) else destination)
