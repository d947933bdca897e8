"""Graph analytics (``mem.graph``) and recall's spreading activation, on real databases.

Vectors come from ``HashEmbedder`` (no meaning, no model): the graph is what is tested.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import networkx as nx
import pytest

from stellar_core import NotFoundError, PermissionDenied, Settings, StellarMemory, ValidationError
from stellar_core.graph import SEALED, communities, shortest_path
from stellar_core.search.spread import spread
from tests.conftest import MemoryFactory
from tests.fakes import HashEmbedder

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def gmem(open_memory: MemoryFactory) -> StellarMemory:
    return open_memory(embedder=HashEmbedder())


def stored(mem: StellarMemory, n: int, namespace: str | None = None) -> list[str]:
    return [x.id for x in mem.store_many([f"memory number {i}" for i in range(n)], namespace=namespace)]


# --- load and GraphML ------------------------------------------------------------------------------
@pytest.mark.backends
def test_load_and_graphml_round_trip_keep_every_attribute(open_memory: MemoryFactory, tmp_path: Path) -> None:
    mem = open_memory(embedder=HashEmbedder(), settings=Settings(encryption_key=KEY))
    a = mem.store("Ines owns the rota", importance=0.9, tags=["people", "ops,team"], thread="standup")
    b = mem.store("the backup window is 02:00 UTC", encrypted=True, tags=["ops"])
    c = mem.store("a line with a \x01 control character")
    gone = mem.store("forgotten soon")
    mem.link(a.id, b.id, kind="related", weight=0.5)
    mem.link(a.id, b.id, kind="supports", weight=1.0)  # a second kind between the same pair
    mem.link(b.id, c.id, kind="related")
    mem.link(c.id, gone.id)
    mem.forget(gone.id)

    g = mem.graph.load()
    assert isinstance(g, nx.MultiDiGraph) and g.graph["namespace"] == "default"
    assert set(g.nodes) == {a.id, b.id, c.id}  # the forgotten one and its link are gone
    assert g.nodes[a.id] == {
        "content": "Ines owns the rota", "zone": a.zone.value, "importance": 0.9, "score": a.score,
        "recall_count": 0, "created_at": a.created_at, "tags": "ops,team,people", "thread": "standup",
        "encrypted": False,
    }  # fmt: skip
    assert g.nodes[b.id]["content"] == "the backup window is 02:00 UTC"  # decrypted: the key is here
    assert g.nodes[b.id]["encrypted"] is True and g.nodes[c.id]["thread"] == ""
    assert sorted(g.edges(keys=True)) == sorted([(a.id, b.id, "related"), (a.id, b.id, "supports"),
                                                 (b.id, c.id, "related")])  # fmt: skip
    assert (
        g.edges[a.id, b.id, "related"]["weight"] == 0.5 and g.edges[a.id, b.id, "supports"]["weight"] == 1.0
    )

    path = tmp_path / "graph.graphml"
    written = mem.graph.export_graphml(path)
    assert written.number_of_nodes() == 3
    back = nx.read_graphml(path, edge_key_type=str, force_multigraph=True)
    assert isinstance(back, nx.MultiDiGraph) and back.graph["namespace"] == "default"
    g.nodes[c.id]["content"] = "a line with a \ufffd control character"  # XML cannot carry \x01
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))  # values and their types
    assert sorted(back.edges(keys=True, data=True)) == sorted(g.edges(keys=True, data=True))
    assert type(back.nodes[a.id]["recall_count"]) is int and type(back.nodes[a.id]["encrypted"]) is bool

    stream = io.BytesIO()
    mem.graph.export_graphml(stream)
    assert stream.getvalue().decode() == mem.graph.graphml() == path.read_text(encoding="utf-8")


def test_encrypted_content_without_the_key_is_a_placeholder(
    open_memory: MemoryFactory, tmp_path: Path
) -> None:
    keyed = open_memory(tmp_path / "m.db", embedder=HashEmbedder(), settings=Settings(encryption_key=KEY))
    secret = keyed.store("the vault code is 4711", encrypted=True)
    keyed.close()
    plain = open_memory(tmp_path / "m.db", embedder=HashEmbedder())
    assert plain.graph.load().nodes[secret.id]["content"] == SEALED
    text = plain.graph.graphml()
    assert "4711" not in text and SEALED in text
    with plain.engine.db.read() as conn:  # the ciphertext is not in the GraphML either
        sealed = conn.exec_driver_sql("SELECT content FROM memories").scalar_one()
    assert sealed not in text


# --- centrality, communities, paths ----------------------------------------------------------------
def test_centrality_ranks_a_hub_first(gmem: StellarMemory) -> None:
    hub, strong, weak, *spokes = stored(gmem, 7)
    for s in spokes:
        gmem.link(s, hub)
    gmem.link(hub, strong, weight=1.0)
    gmem.link(hub, weak, weight=0.1)

    ranked = gmem.graph.centrality("pagerank")
    assert [i for i, _ in ranked[:3]] == [hub, strong, weak]  # weighted: the strong link counts more
    assert sum(v for _, v in ranked) == pytest.approx(1.0)
    degree = gmem.graph.centrality("degree", limit=2)
    assert degree == [(hub, pytest.approx(6 / 6)), (degree[1][0], pytest.approx(1 / 6))]
    with pytest.raises(ValidationError):
        gmem.graph.centrality("betweenness")
    with pytest.raises(ValidationError):
        gmem.graph.centrality(limit=0)


def test_communities_split_two_cliques_at_their_bridge(gmem: StellarMemory) -> None:
    ids = stored(gmem, 9)
    left, right, alone = ids[:4], ids[4:8], ids[8]
    for clique in (left, right):
        for i, a in enumerate(clique):
            for b in clique[i + 1 :]:
                gmem.link(a, b)
    gmem.link(left[0], right[0], weight=0.2)  # the bridge

    groups = gmem.graph.communities()
    assert groups == [*sorted([sorted(left), sorted(right)], key=lambda c: c[0]), [alone]]
    assert gmem.graph.communities(seed=0) == groups  # deterministic
    assert communities(nx.MultiDiGraph()) == []


def test_path_follows_links_either_way(gmem: StellarMemory) -> None:
    a, b, c, d, island = stored(gmem, 5)
    gmem.link(a, b)
    gmem.link(c, b)  # against the direction of travel
    gmem.link(c, d)
    assert gmem.graph.path(a, d) == [a, b, c, d]
    assert gmem.graph.path(d, a) == [d, c, b, a]
    assert gmem.graph.path(a, a) == [a]
    with pytest.raises(NotFoundError, match="no chain"):
        gmem.graph.path(a, island)
    with pytest.raises(NotFoundError, match="no memory"):
        gmem.graph.path(a, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValidationError):
        gmem.graph.path(a, 42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        gmem.graph.path("", a)
    with pytest.raises(NotFoundError):  # in another namespace, the memory does not exist
        gmem.graph.path(a, b, namespace="elsewhere")
    assert shortest_path(gmem.graph.load(), b, d) == [b, c, d]


# --- access control ----------------------------------------------------------------------------------
@pytest.mark.backends
def test_a_reader_of_another_namespace_is_refused(open_memory: MemoryFactory) -> None:
    root = "root"
    mem = open_memory(embedder=HashEmbedder(), agent=root,
                      settings=Settings(access_control=True, admins=[root], audit_log=True))  # fmt: skip
    for ns in ("team", "other"):
        a, b = stored(mem, 2, namespace=ns)
        mem.link(a, b, namespace=ns)
    mem.security.grant("rita", "team", "reader")
    team = mem.graph.load(namespace="team", principal="rita")
    assert team.number_of_nodes() == 2 and team.number_of_edges() == 1
    a, b = list(team.nodes)
    calls = [
        lambda: mem.graph.load(namespace="other", principal="rita"),
        lambda: mem.graph.centrality(namespace="other", principal="rita"),
        lambda: mem.graph.communities(namespace="other", principal="rita"),
        lambda: mem.graph.path(a, b, namespace="other", principal="rita"),
        lambda: mem.graph.graphml(namespace="other", principal="rita"),
        lambda: mem.graph.export_graphml(io.BytesIO(), namespace="other", principal="rita"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    mem.security.flush()
    log = mem.security.audit(limit=50)
    refused = [r for r in log if r["principal"] == "rita" and r["outcome"] == "denied"]
    assert len(refused) == len(calls) and {r["namespace"] for r in refused} == {"other"}
    seen = next(r for r in log if r["principal"] == "rita" and r["outcome"] == "allowed")
    assert sorted(seen["memory_ids"]) == sorted(team.nodes)  # the audit names what rita was given


# --- spreading activation --------------------------------------------------------------------------
def test_spread_decays_per_hop_and_stops_at_the_floor() -> None:
    edges = {("s", "a", 1.0), ("a", "b", 1.0), ("b", "c", 1.0), ("c", "d", 1.0), ("x", "a", 0.5)}

    def around(ids):  # either way, as the links table is read
        return [(u, v, w) for u, v, w in edges if u in ids] + [(v, u, w) for u, v, w in edges if v in ids]

    got = spread({"s": 1.0}, around, decay=0.8, floor=0.5, most=100)
    assert got == pytest.approx({"a": 0.8, "b": 0.64, "c": 0.512})  # x: 0.64 * 0.8 * 0.5 < 0.5
    assert "d" not in got  # 0.512 * 0.8 is below the floor
    assert spread({"s": 1.0}, around, decay=0.8, floor=0.5, most=1) == {"a": pytest.approx(0.8)}
    weak = spread({"s": 1.0, "b": 0.1}, around, decay=0.5, floor=0.1, most=100)
    assert weak["b"] == pytest.approx(0.25)  # a weak seed is raised by a strong one two hops off
    assert spread({"s": 0.1}, around, decay=0.5, floor=0.1, most=100) == {}


def test_recall_expansion_reaches_two_hops_but_not_below_the_floor(open_memory: MemoryFactory) -> None:
    mem = open_memory(embedder=HashEmbedder(), settings=Settings(graph_decay=0.5, graph_floor=0.1))
    seed = mem.store("the staging database password rotates every Monday")
    chain = stored(mem, 6)  # unrelated to the query
    mem.store_many([f"filler line {i} about lunch" for i in range(20)])
    for a, b in zip([seed.id, *chain[:-1]], chain, strict=True):
        mem.link(a, b, kind="next")

    q = "the staging database password rotates every Monday"
    plain = {h.memory.id: h for h in mem.recall(q, k=10, count=False)}
    r = plain[seed.id].relevance
    hits = {h.memory.id: h for h in mem.recall(q, k=10, expand=True, count=False)}
    assert hits[seed.id].relevance == r
    reached = [i for i in chain if i in hits and "graph" in hits[i].via]
    hops = [h for h in range(1, 7) if r * 0.5**h >= 0.1]
    assert len(hops) >= 2 and reached == chain[: len(hops)]  # two hops at least, none past the floor
    for h, i in enumerate(reached, 1):
        assert hits[i].relevance == pytest.approx(r * 0.5**h)
    assert not set(chain[len(hops) :]) & {i for i, x in hits.items() if "graph" in x.via}


# --- the command line --------------------------------------------------------------------------------
def test_cli_graph_commands(tmp_path: Path, embedder, capsys: pytest.CaptureFixture[str]) -> None:
    from stellar_core.cli import main

    db = tmp_path / "cli.db"
    with StellarMemory(db, embedder=embedder, background=False) as mem:
        hub, a, b, island = (x.id for x in mem.store_many(["the hub", "spoke a", "spoke b", "an island"]))
        mem.link(a, hub)
        mem.link(b, hub, kind="supports", weight=0.5)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--db", str(db), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("graph", "centrality", "--json", "--limit", "2")
    assert code == 0
    top = json.loads(out)
    assert [x["id"] for x in top][:1] == [hub] and top[0]["content"] == "the hub" and len(top) == 2
    code, out, _ = run("graph", "centrality", "--kind", "degree")
    assert code == 0 and out.splitlines()[0].startswith(" 1. 0.6667  [" + hub + "]  the hub")
    code, out, _ = run("graph", "communities", "--json")
    groups = json.loads(out)
    assert code == 0 and groups[0]["ids"] == sorted([hub, a, b]) and groups[1]["ids"] == [island]
    code, out, _ = run("graph", "path", a, b)
    assert code == 0 and [line.split("]")[0].split("[")[1] for line in out.splitlines()] == [a, hub, b]
    code, _, err = run("graph", "path", a, island)
    assert code == 2 and err.startswith("error: no chain of links")
    code, _, err = run("graph", "path", a)
    assert code == 2 and "two memory ids" in err

    code, out, _ = run("graph", "export")  # GraphML on stdout
    assert code == 0 and nx.read_graphml(io.StringIO(out), edge_key_type=str).number_of_edges() == 2
    target = tmp_path / "out.graphml"
    code, out, _ = run("graph", "export", str(target))
    assert code == 0 and out.strip() == f"exported 4 memories and 2 links of namespace default to {target}"
    back = nx.read_graphml(target, edge_key_type=str, force_multigraph=True)
    assert set(back.edges(keys=True)) == {(a, hub, "related"), (b, hub, "supports")}
