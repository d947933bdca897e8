"""The HTTP API end to end: a real uvicorn on loopback, httpx as the client, a real database
and the real embedding model. Every verb, API keys and grants, problem details, limits,
pagination. (The live event stream: test_http_stream.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse

from stellar_core import Settings, StellarMemory
from stellar_core.server.http import create_app
from tests.api_server import running
from tests.sites import Site, reply
from tests.test_connectors_web import SKARVIK, article

Open = Callable[..., StellarMemory]
PROBLEM = {"type", "title", "status", "detail", "instance"}


@dataclass
class Api:
    mem: StellarMemory
    url: str
    key: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def serve(open_memory: Open) -> Iterator[Callable[..., Api]]:
    """Serves a memory opened with these settings; its key acts as ``agent``."""
    with_servers: list[object] = []

    def _serve(settings: Settings | None = None, agent: str = "alice", **kw: object) -> Api:
        mounts = kw.pop("mounts", None)
        mem = open_memory(settings=settings or Settings(), agent="root", **kw)
        ctx = running(create_app(mem, mounts=mounts))  # type: ignore[arg-type]
        url = ctx.__enter__()
        with_servers.append(ctx)
        return Api(mem, url, mem.security.create_api_key(agent))

    yield _serve
    for ctx in reversed(with_servers):
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


def problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= PROBLEM and body["status"] == status
    assert "Traceback" not in r.text
    return body  # type: ignore[no-any-return]


@pytest.mark.backends
def test_every_verb_end_to_end(serve: Callable[..., Api]) -> None:
    api = serve()
    ns = "/v1/namespaces/ops"
    with api.client() as c:
        a = c.post(
            f"{ns}/memories",
            json={
                "content": "The backup window is 02:00 UTC",
                "importance": 0.8,
                "tags": ["ops"],
                "thread": "standup",
                "metadata": {"by": "ines"},
            },
        )
        assert a.status_code == 201, a.text
        a = a.json()
        assert a["namespace"] == "ops" and a["tags"] == ["ops"] and a["metadata"] == {"by": "ines"}
        batch = c.post(f"{ns}/memories/batch", json={"items": [
            {"content": "Ines owns the on-call rota this week", "thread": "standup"},
            {"content": "The staging database runs PostgreSQL 17"}]})  # fmt: skip
        assert batch.status_code == 201
        b, d = batch.json()["memories"]
        assert c.get(f"{ns}/memories/{a['id']}").json()["content"] == "The backup window is 02:00 UTC"

        changed = c.patch(f"{ns}/memories/{b['id']}", json={"importance": 0.9, "tags": ["people"]})
        assert changed.status_code == 200 and changed.json()["importance"] == 0.9
        assert changed.json()["content"] == b["content"]  # untouched

        link = c.post(f"{ns}/links", json={"source_id": a["id"], "target_id": b["id"], "kind": "about"})
        assert link.status_code == 201 and link.json()["kind"] == "about"
        out = c.get(f"{ns}/memories/{a['id']}/links", params={"direction": "out"}).json()["links"]
        assert [(x["source_id"], x["target_id"]) for x in out] == [(a["id"], b["id"])]
        assert c.get(f"{ns}/memories/{a['id']}/links", params={"direction": "in"}).json()["links"] == []

        assert [x["id"] for x in c.get(f"{ns}/threads/standup").json()["memories"]] == [a["id"], b["id"]]

        hits = c.get(f"{ns}/recall", params={"q": "backup window 02:00 UTC", "k": 2}).json()["hits"]
        assert hits[0]["id"] == a["id"] and hits[0]["relevance"] > 0 and "snippet" in hits[0]
        tagged = c.post(f"{ns}/recall", json={"query": "who is on call?", "tags": ["people"], "k": 5})
        assert [h["id"] for h in tagged.json()["hits"]] == [b["id"]]
        since = c.get(f"{ns}/recall", params={"q": "backups", "since": "2999-01-01T00:00:00Z"}).json()
        assert since["hits"] == []
        asked = {"query": "backup window", "k": 3, "expand": True, "count": False}
        expanded = c.post(f"{ns}/recall", json=asked).json()
        direct = api.mem.recall("backup window", k=3, expand=True, count=False, namespace="ops")
        assert [h["id"] for h in expanded["hits"]] == [h.memory.id for h in direct]

        assert c.get(f"{ns}/stats").json()["memories"] == 3
        assert "ops" in c.get("/v1/namespaces").json()["namespaces"]

        gone = c.delete(f"{ns}/memories/{d['id']}")
        assert gone.status_code == 200
        problem(c.get(f"{ns}/memories/{d['id']}"), 404)
        events = c.get(f"{ns}/events", params={"after": 0}).json()["events"]
        assert [e["op"] for e in events][:3] == ["store", "store", "store"]
        assert events[-1]["op"] == "forget" and events == sorted(events, key=lambda e: e["seq"])
        later = c.get(f"{ns}/events", params={"after": events[1]["seq"]}).json()["events"]
        assert later == events[2:]

        status = c.get(f"{ns}/sync").json()
        assert status["configured"] is False and "not configured" in status["detail"]
        assert status["status"]["namespace"] == "ops"

    # every call acted as the key's agent
    assert {e.agent for e in api.mem.events(limit=100, namespace="ops")} == {"alice"}


def test_graph_endpoints(serve: Callable[..., Api]) -> None:
    api = serve()
    a, b, c, lone = api.mem.store_many(
        ["Ines owns the rota", "The rota changes on Mondays", "Mondays start at 08:00", "Lunch is at noon"],
        namespace="ops",
    )
    api.mem.link(a.id, b.id, kind="supports", weight=0.6, namespace="ops")
    api.mem.link(b.id, c.id, namespace="ops")
    ns = "/v1/namespaces/ops"
    with api.client() as client:
        hood = client.get(f"{ns}/memories/{a.id}/neighbourhood", params={"depth": 2}).json()
        assert {m["id"]: m["hops"] for m in hood["memories"]} == {b.id: 1, c.id: 2} and len(
            hood["links"]
        ) == 2
        one = client.get(f"{ns}/memories/{a.id}/neighbourhood", params={"depth": 2, "limit": 1}).json()
        assert [m["id"] for m in one["memories"]] == [b.id] and one["truncated"]
        ranking = client.get(f"{ns}/graph/centrality", params={"kind": "degree", "limit": 1}).json()[
            "ranking"
        ]
        assert ranking == [{"id": b.id, "score": pytest.approx(2 / 3)}]
        groups = client.get(f"{ns}/graph/communities").json()["communities"]
        assert sorted(map(sorted, groups)) == sorted([sorted([a.id, b.id, c.id]), [lone.id]])
        assert client.get(f"{ns}/graph/path", params={"source": c.id, "target": a.id}).json() == {
            "path": [c.id, b.id, a.id]
        }
        problem(client.get(f"{ns}/graph/path", params={"source": a.id, "target": lone.id}), 404)
        problem(client.get(f"{ns}/graph/centrality", params={"kind": "closeness"}), 422)
        exported = client.get(f"{ns}/graph")
        assert exported.headers["content-type"].startswith("application/graphml+xml")
    import io

    import networkx as nx

    g = nx.read_graphml(io.BytesIO(exported.content))
    assert set(g.nodes) == {a.id, b.id, c.id, lone.id} and g.nodes[a.id]["content"] == "Ines owns the rota"
    assert g.number_of_edges() == 2


def test_api_keys(serve: Callable[..., Api]) -> None:
    api = serve(Settings(grants_refresh_seconds=0.3))
    ns = "/v1/namespaces/ops/memories"
    with httpx.Client(base_url=api.url, timeout=30) as c:
        assert c.get("/health").json()["status"] == "ok"  # no key needed
        assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200
        missing = c.get(ns)
        problem(missing, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        problem(c.get(ns, headers={"Authorization": f"Basic {api.key}"}), 401)
        problem(c.get(ns, headers={"Authorization": "Bearer stk_nothing_here"}), 401)
        problem(c.get(ns, headers={"X-API-Key": "not-a-key"}), 401)
        assert c.get(ns, headers={"X-API-Key": api.key}).status_code == 200
        assert c.get(ns, headers={"Authorization": f"Bearer {api.key}"}).status_code == 200

        api.mem.security.revoke_api_key(api.key.split("_")[1])
        time.sleep(0.4)  # the key was trusted for grants_refresh_seconds at most
        problem(c.get(ns, headers={"X-API-Key": api.key}), 401)


def test_a_reader_key_cannot_store(serve: Callable[..., Api]) -> None:
    api = serve(Settings(access_control=True, admins=["root"]), agent="rita")
    api.mem.store("The backup window is 02:00 UTC", namespace="team")
    api.mem.security.grant("rita", "team", "reader")
    with api.client() as c:
        refused = problem(c.post("/v1/namespaces/team/memories", json={"content": "rita was here"}), 403)
        assert refused["type"] == "urn:stellar:problem:forbidden"
        hits = c.get("/v1/namespaces/team/recall", params={"q": "backup"}).json()["hits"]
        assert len(hits) == 1
        problem(c.get("/v1/namespaces/other/stats"), 403)  # no grant there at all
        assert c.get("/v1/namespaces").json()["namespaces"] == ["team"]
    assert api.mem.stats(namespace="team").memories == 1


def test_errors_are_problem_details(serve: Callable[..., Api]) -> None:
    limit = 4096
    api = serve(Settings(server_max_body_bytes=limit))
    ns = "/v1/namespaces/ops"
    with api.client() as c:
        problem(c.get("/v1/no/such/route"), 404)
        not_allowed = problem(c.put(f"{ns}/memories/abc", json={}), 405)
        assert not_allowed["type"] == "about:blank"
        bad = problem(c.post(f"{ns}/memories", content=b'{"content": "unterminated',
                             headers={"Content-Type": "application/json"}), 400)  # fmt: skip
        assert bad["type"] == "urn:stellar:problem:malformed-json"
        invalid = problem(c.post(f"{ns}/memories", json={"content": "x", "importance": 2}), 422)
        assert invalid["errors"][0]["loc"] == ["body", "importance"]  # type: ignore[index]
        problem(c.post(f"{ns}/memories", json={"content": "x", "colour": "blue"}), 422)  # unknown field
        problem(c.get(f"{ns}/recall"), 422)  # no query
        problem(c.get("/v1/namespaces/no spaces allowed/stats"), 422)  # the engine's own check
        problem(c.get(f"{ns}/memories/{'0' * 32}"), 404)

        big = {"content": "x" * (limit + 10)}
        problem(c.post(f"{ns}/memories", json=big), 413)  # Content-Length says so

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
            yield b'{"content": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        chunked = c.post(f"{ns}/memories", content=chunks(), headers={"Content-Type": "application/json"})
        problem(chunked, 413)
        small = c.post(f"{ns}/memories", content=iter([b'{"content": "', b"small", b'"}']),
                       headers={"Content-Type": "application/json"})  # fmt: skip
        assert small.status_code == 201  # chunked and under the limit: fine
    assert api.mem.stats(namespace="ops").memories == 1


def test_pages_walk_every_memory_once(serve: Callable[..., Api]) -> None:
    api = serve()
    stored = api.mem.store_many([f"fact number {i} about the fleet" for i in range(23)], namespace="ops")
    api.mem.get(stored[5].id, namespace="ops")  # scores differ a little: order by score, then age
    seen: list[str] = []
    url: str | None = "/v1/namespaces/ops/memories?limit=5"
    with api.client() as c:
        while url:
            page = c.get(url).json()
            seen += [x["id"] for x in page["memories"]]
            url = page["next"]
        assert len(seen) == 23 and set(seen) == {x.id for x in stored}
        events, after = [], 0
        while True:
            page = c.get("/v1/namespaces/ops/events", params={"after": after, "limit": 10}).json()
            events += page["events"]
            after = page["last"]
            if page["next"] is None:
                break
        assert [e["memory_id"] for e in events] == [x.id for x in stored]


def test_ingest_a_web_page_through_the_guard(serve: Callable[..., Api], site: Site, tmp_path: Path) -> None:
    site.routes["/skarvik"] = reply(article("Skarvik station", *SKARVIK))
    refused = serve()  # the SSRF guard: loopback is not allowed by default
    with refused.client() as c:
        body = problem(c.post("/v1/namespaces/ops/ingest/url", json={"url": site.url("/skarvik")}), 422)
        assert body["type"] == "urn:stellar:problem:source-refused"
    api = serve(Settings(web_allow_hosts=["127.0.0.1"]), location=tmp_path / "allowed.db")
    with api.client() as c:
        done = c.post("/v1/namespaces/ops/ingest/url", json={"url": site.url("/skarvik"), "importance": 0.7})
        assert done.status_code == 201, done.text
        assert done.json()["sources"] == 1 and done.json()["chunks"] >= 1
        hit = c.get("/v1/namespaces/ops/recall", params={"q": "how long is a pass?", "k": 1}).json()["hits"][
            0
        ]
        assert hit["source"]["url"] == site.url("/skarvik") and hit["importance"] == 0.7


def test_extra_apps_mount_beside_the_api(serve: Callable[..., Api]) -> None:
    api = serve(mounts={"/mcp": PlainTextResponse("mounted")})
    with httpx.Client(base_url=api.url) as c:
        assert c.get("/mcp").text == "mounted"  # at exactly its path, no redirect
        paths = c.get("/openapi.json").json()["paths"]
        assert "/v1/namespaces/{ns}/memories" in paths and "/v1/namespaces/{ns}/events/stream" in paths
