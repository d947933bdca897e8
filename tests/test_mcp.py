"""The MCP server through the SDK's own client: over stdio (``stellar mcp`` as a real
subprocess) and over streamable HTTP (uvicorn on loopback), on a real SQLite memory with the
real embedding model."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import redis as redis_lib
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, PARSE_ERROR, CallToolResult, TextResourceContents

from stellar_core import Settings, StellarMemory
from stellar_core.server.http import serving_app
from stellar_core.server.mcp import mcp_http_app
from tests.api_server import running
from tests.services import Redis
from tests.sites import Site, reply

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {
    "memory_store", "memory_recall", "memory_get", "memory_update", "memory_forget", "memory_link",
    "memory_links", "memory_stats", "memory_sync_status", "memory_ingest_url", "memory_graph_central",
    "memory_graph_communities", "memory_graph_path",
}  # fmt: skip
SECURE = Settings(access_control=True, admins=["root"], audit_log=True, web_allow_hosts=["127.0.0.1"])


# --- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on uvicorn in a background thread; yields the endpoint's URL."""
    with running(app) as url:
        yield url + "/mcp"


@contextlib.asynccontextmanager
async def http_session(url: str, key: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def data(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


def run(fn: Callable[[], Any]) -> Any:
    return anyio.run(fn)


@pytest.fixture
def secure(open_memory: Callable[..., StellarMemory], tmp_path: Path) -> StellarMemory:
    """Access control on: root administers, bob may read ``team`` only."""
    mem = open_memory(tmp_path / "secure.db", settings=SECURE, agent="root")
    mem.store("The backup window is 02:00-03:00 UTC", namespace="team", tags=["ops"])
    mem.store("Lunch is at noon on Fridays", namespace="private")
    mem.security.grant("bob", "team", "reader")
    return mem


@pytest.fixture
def endpoint(secure: StellarMemory) -> Iterator[str]:
    with serving(mcp_http_app(secure).starlette()) as url:
        yield url


# --- stdio: `stellar mcp` as a subprocess ----------------------------------------------------
def test_stdio_tools_round_trip_resources_and_errors(tmp_path: Path) -> None:
    db = tmp_path / "stdio.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "stellar_core.cli", "--db", str(db), "--agent", "claude", "mcp"],
        env={"HF_HUB_OFFLINE": "1", "STELLAR_HOME": str(tmp_path)},
        cwd=str(ROOT),
    )

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.description and len(tool.description) > 80, tool.name
                props = tool.input_schema["properties"]
                assert "namespace" in props, tool.name
                for name, prop in props.items():
                    assert prop.get("description"), (tool.name, name)
            assert tools["memory_recall"].input_schema["properties"]["k"]["maximum"] == 50
            assert tools["memory_recall"].annotations and tools["memory_recall"].annotations.read_only_hint

            a = data(await s.call_tool("memory_store", {"content": "The backup window is 02:00-03:00 UTC",
                                                        "tags": ["ops"], "importance": 0.8}))  # fmt: skip
            b = data(await s.call_tool("memory_store", {"content": "Ines owns the on-call rota"}))
            c = data(await s.call_tool("memory_store", {"content": "The rota changes on Mondays"}))
            assert a["tags"] == ["ops"] and a["namespace"] == "default" and not a["origin"]
            hits = data(await s.call_tool("memory_recall", {"query": "when do backups run?", "k": 2}))["hits"]
            assert hits[0]["id"] == a["id"] and "backup" in hits[0]["snippet"]
            assert data(await s.call_tool("memory_get", {"memory_id": b["id"]}))["content"] == b["content"]
            updated = data(await s.call_tool("memory_update", {"memory_id": b["id"], "importance": 0.9}))
            assert updated["importance"] == 0.9 and updated["content"] == b["content"]
            link = data(await s.call_tool("memory_link", {"source_id": a["id"], "target_id": b["id"]}))
            assert (link["source_id"], link["target_id"], link["kind"]) == (a["id"], b["id"], "related")
            await s.call_tool("memory_link", {"source_id": b["id"], "target_id": c["id"], "kind": "follows"})
            near = data(await s.call_tool("memory_links", {"memory_id": a["id"]}))
            assert [m["id"] for m in near["memories"]] == [b["id"]] and len(near["links"]) == 1
            far = data(await s.call_tool("memory_links", {"memory_id": a["id"], "depth": 2}))
            assert {m["id"]: m["hops"] for m in far["memories"]} == {b["id"]: 1, c["id"]: 2}
            assert not far["truncated"]
            central = data(await s.call_tool("memory_graph_central", {"kind": "degree", "limit": 1}))[
                "memories"
            ]
            assert [m["id"] for m in central] == [b["id"]] and central[0]["centrality"] > 0  # the middle one
            groups = data(await s.call_tool("memory_graph_communities", {}))
            assert groups["total"] == 1 and sorted(groups["communities"][0]["memory_ids"]) == sorted(
                [a["id"], b["id"], c["id"]]
            )
            chain = data(await s.call_tool("memory_graph_path", {"source_id": c["id"], "target_id": a["id"]}))
            assert [m["id"] for m in chain["path"]] == [c["id"], b["id"], a["id"]]
            stats = data(await s.call_tool("memory_stats", {}))
            assert (stats["memories"], stats["links"]) == (3, 2) and sum(stats["zones"].values()) == 3
            sync = data(await s.call_tool("memory_sync_status", {}))
            assert sync["configured"] is False and "not configured" in sync["detail"]
            gone = data(await s.call_tool("memory_forget", {"memory_id": c["id"]}))
            assert gone["id"] == c["id"]
            assert "NotFoundError" in error(await s.call_tool("memory_get", {"memory_id": c["id"]}))

            # the namespaces as resources
            listed = (await s.list_resources()).resources
            assert [str(r.uri) for r in listed] == ["stellar://namespaces"]
            templates = (await s.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["stellar://namespaces/{namespace}"]
            spaces = json.loads(_text(await s.read_resource("stellar://namespaces")))
            assert spaces["namespaces"] == [{"name": "default", "uri": "stellar://namespaces/default"}]
            one = json.loads(_text(await s.read_resource("stellar://namespaces/default")))
            assert one["memories"] == 2 and one["zone_policy"]["capacities"] and len(one["top"]) == 2

            # errors: bad arguments are tool errors; an unknown tool is a protocol error
            assert "k" in error(await s.call_tool("memory_recall", {"query": "x", "k": 5000}))
            assert "validation error" in error(await s.call_tool("memory_get", {}))
            with pytest.raises(MCPError) as unknown:
                await s.call_tool("memory_teleport", {})
            assert unknown.value.code == INVALID_PARAMS and "memory_teleport" in unknown.value.message
            # and the server keeps serving
            assert data(await s.call_tool("memory_stats", {}))["memories"] == 2

    run(main)
    with StellarMemory(db, background=False) as mem:  # written as the agent given by --agent
        assert {x.origin or "(stored)" for x in mem.memories()} == {"(stored)"}
        assert mem.events(limit=1)[0].agent == "claude"


def _text(result: Any) -> str:
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    return content.text


# --- streamable HTTP: API keys, per-key access control ----------------------------------------
def test_http_requests_need_a_valid_api_key(secure: StellarMemory, endpoint: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(endpoint, json=body, headers=headers).status_code == 401
    bad = httpx.post(endpoint, json=body, headers={**headers, "Authorization": "Bearer stk_nope_nope"})
    assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["status"] == 401 and "not valid" in bad.json()["detail"]
    assert bad.headers["www-authenticate"].startswith("Bearer")
    key = secure.security.create_api_key("bob")
    secure.security.revoke_api_key(key.split("_")[1])
    assert httpx.post(endpoint, json=body, headers={**headers, "X-API-Key": key}).status_code == 401
    good = secure.security.create_api_key("bob")
    ok = httpx.post(endpoint, json=body, headers={**headers, "X-API-Key": good})
    assert ok.status_code == 200 and {t["name"] for t in ok.json()["result"]["tools"]} == TOOLS


def test_http_garbage_is_a_parse_error_and_big_bodies_are_refused(
    secure: StellarMemory, endpoint: str
) -> None:
    key = secure.security.create_api_key("root")
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "Authorization": f"Bearer {key}"}  # fmt: skip
    garbage = httpx.post(endpoint, content=b'{"jsonrpc": "2.0", "id": 1, "meth', headers=headers)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == PARSE_ERROR
    big = b'{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"x": "' + b"a" * 1_100_000 + b'"}}'
    assert httpx.post(endpoint, content=big, headers=headers).status_code == 413
    ping = httpx.post(endpoint, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=headers)
    assert ping.status_code == 200 and ping.json()["result"] is not None  # still serving


def test_http_tools_act_as_the_key_s_principal(secure: StellarMemory, endpoint: str) -> None:
    reader, admin = secure.security.create_api_key("bob"), secure.security.create_api_key("root")

    async def main() -> None:
        async with http_session(endpoint, reader) as bob:
            refused = error(
                await bob.call_tool("memory_store", {"content": "bob was here", "namespace": "team"})
            )
            assert "PermissionDenied" in refused and "bob" in refused
            hits = data(await bob.call_tool("memory_recall", {"query": "backup window", "namespace": "team"}))
            assert hits["hits"] and "02:00" in hits["hits"][0]["content"]
            assert "PermissionDenied" in error(await bob.call_tool("memory_stats", {"namespace": "private"}))
            spaces = json.loads(_text(await bob.read_resource("stellar://namespaces")))
            assert [x["name"] for x in spaces["namespaces"]] == ["team"]
            with pytest.raises(MCPError):
                await bob.read_resource("stellar://namespaces/private")
        async with http_session(endpoint, admin) as root:
            stored = data(await root.call_tool("memory_store", {"content": "Deploys freeze on Fridays",
                                                                "namespace": "team"}))  # fmt: skip
            assert stored["namespace"] == "team"

    run(main)
    secure.security.flush()
    audit = secure.security.audit(limit=200)
    assert any(r["principal"] == "bob" and r["action"] == "store" and r["outcome"] == "denied" for r in audit)
    assert any(
        r["principal"] == "root" and r["action"] == "store" and r["outcome"] == "allowed" for r in audit
    )


def test_http_ingest_url_goes_through_the_ssrf_guard(
    secure: StellarMemory, endpoint: str, site: Site
) -> None:
    site.routes["/runbook"] = reply(
        "<html><head><title>Runbook</title></head><body><article><h1>Runbook</h1>"
        "<p>Restart the ingest worker with systemctl restart stellar-ingest when its queue stalls.</p>"
        "<p>Page the on-call engineer if the queue is still stalled after ten minutes.</p>"
        "</article></body></html>"
    )
    admin, reader = secure.security.create_api_key("root"), secure.security.create_api_key("bob")

    async def main() -> None:
        async with http_session(endpoint, admin) as root:
            done = data(await root.call_tool("memory_ingest_url", {"url": site.url("/runbook"),
                                                                   "namespace": "team"}))  # fmt: skip
            assert done["sources"] == 1 and done["new"] >= 1
            hits = data(await root.call_tool("memory_recall", {"query": "queue stalls", "namespace": "team"}))
            assert hits["hits"][0]["source"]["url"] == site.url("/runbook")
            private = error(await root.call_tool("memory_ingest_url", {"url": "http://10.1.2.3/admin",
                                                                       "namespace": "team"}))  # fmt: skip
            assert "SourceError" in private and "10.1.2.3" in private
        async with http_session(endpoint, reader) as bob:  # a reader may not make the server fetch
            refused = error(await bob.call_tool("memory_ingest_url", {"url": site.url("/runbook"),
                                                                      "namespace": "team"}))  # fmt: skip
            assert "PermissionDenied" in refused

    run(main)
    assert [path for path, _ in site.requests] == ["/runbook"]  # fetched once, by root only


def test_sync_status_with_sync_configured(open_memory: Callable[..., StellarMemory], tmp_path: Path,
                                          redis_server: Redis) -> None:  # fmt: skip
    url = redis_server.url(4)
    redis_lib.Redis.from_url(url).flushdb()
    mem = open_memory(tmp_path / "synced.db", settings=Settings(sync_url=url), agent="hub")
    mem.store("The backup window is 02:00-03:00 UTC")
    key = mem.security.create_api_key("hub")

    async def main() -> dict[str, Any]:
        async with http_session(endpoint, key) as s:
            return data(await s.call_tool("memory_sync_status", {}))  # type: ignore[no-any-return]

    with serving(mcp_http_app(mem).starlette()) as endpoint:
        before = run(main)
        mem.sync.publish_all()
        after = run(main)
    assert before["configured"] is True and before["detail"] == ""
    status = before["status"]
    assert status["connected"] is True and status["unpublished"] == 1 and status["namespace"] == "default"
    assert after["status"]["unpublished"] == 0 and after["status"]["stream_length"] == 1


def test_served_beside_the_http_api_as_stellar_serve_does(mem: StellarMemory) -> None:
    """``stellar serve``: one server, the API under /v1 and MCP at exactly /mcp."""
    key = mem.security.create_api_key("agent-7")

    async def main() -> dict[str, Any]:
        async with http_session(endpoint, key) as s:
            return data(await s.call_tool("memory_store", {"content": "Mounted MCP works"}))  # type: ignore[no-any-return]

    with serving(serving_app(mem)) as endpoint:
        stored = run(main)
        base = endpoint.removesuffix("/mcp")
        assert httpx.get(base + "/health").json()["status"] == "ok"
        listed = httpx.get(f"{base}/v1/namespaces", headers={"X-API-Key": key}).json()
        assert listed == {"namespaces": ["default"]}
        assert httpx.post(endpoint, content=b"{}").status_code == 401  # the API key checked here too
        assert "/mcp" not in httpx.get(base + "/openapi.json").json()["paths"]
    assert mem.events(limit=1)[0].agent == "agent-7" and stored["content"] == "Mounted MCP works"
