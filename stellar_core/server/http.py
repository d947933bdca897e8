"""The HTTP API: Stellar Memory for agents in any language (decision 0032).

    from stellar_core.server.http import create_app
    app = create_app(StellarMemory())         # then: uvicorn, or `stellar serve`

Every route is under ``/v1``; the namespace is in the path (``/v1/namespaces/{ns}/...``).
Every route but ``/health`` (and the docs at ``/docs``, ``/openapi.json``) needs an API key
(``access``); each call acts as the key's principal. Errors are problem details
(``problems``); the live event stream (SSE and WebSocket) is in ``stream``. The facade is
blocking: routes are plain ``def`` functions, which FastAPI runs in its thread pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from stellar_core.connectors.web import ingest_url
from stellar_core.memory import StellarMemory
from stellar_core.server import problems, shapes, stream
from stellar_core.server.access import Caller, Keys
from stellar_core.server.schemas import (
    PAGE,
    Direction,
    IngestUrlRequest,
    LinkRequest,
    RecallRequest,
    StoreBatch,
    StoreRequest,
    UpdateRequest,
    ZoneName,
)

try:
    VERSION = version("stellar-memory")
except PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0"
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
NS = "/v1/namespaces/{ns}"
GRAPHML = "application/graphml+xml"

DESCRIPTION = """Shared long-term memory for AI agents, over HTTP.

* **Namespaces** are in the path: `/v1/namespaces/{ns}/...`.
* **Auth**: every route but `/health` needs an API key (`stellar api-key create AGENT`), as
  `Authorization: Bearer stk_...` or `X-API-Key: stk_...`; the call acts as the key's agent
  (grants, audit). Invalid key: 401; refused by a grant: 403.
* **Errors** are RFC 9457 problem details (`application/problem+json`).
* **Live events**: `GET .../events/stream` (Server-Sent Events; resume with `Last-Event-ID`) or
  the WebSocket `.../events/ws?after=SEQ` (key in a header, `?api_key=`, or a first message
  `{"api_key": "..."}`). An event's id is its `seq` in this database's change log.
"""


def create_app(
    mem: StellarMemory,
    *,
    mounts: Mapping[str, ASGIApp] | None = None,
    lifespans: Sequence[Lifespan] = (),
) -> FastAPI:
    """The HTTP API over ``mem`` (which the caller opens and closes).

    ``mounts``: more ASGI apps served beside the API, each at exactly its path (the MCP server
    at ``/mcp``; a prefix mount would redirect ``/mcp`` to ``/mcp/``); ``lifespans``: context
    managers entered while the app runs (a mounted app's start-up and shut-down: Starlette
    does not run a mounted app's own lifespan).
    """
    hub = stream.Hub(mem)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await hub.start()
            stack.push_async_callback(hub.stop)
            for each in lifespans:
                await stack.enter_async_context(each(app))
            yield

    app = FastAPI(
        title="Stellar Memory",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.mem, app.state.keys, app.state.hub = mem, Keys(mem), hub
    problems.install(app)
    app.add_middleware(problems.BodyLimit, limit=mem.settings.server_max_body_bytes)
    app.include_router(_routes(mem))
    app.include_router(stream.routes(mem, hub))
    for path, sub in (mounts or {}).items():  # extra ASGI apps (the MCP server at /mcp)
        app.router.routes.append(Route(path, sub, methods=["GET", "POST", "DELETE"], include_in_schema=False))
    return app


def serving_app(mem: StellarMemory, host: str = "127.0.0.1") -> FastAPI:
    """What ``stellar serve`` runs: the API, and the MCP server's streamable HTTP endpoint at
    ``/mcp`` (``host``: the address served, for the MCP SDK's DNS-rebinding guard)."""
    from stellar_core.server.mcp import mcp_http_app

    mcp = mcp_http_app(mem, host=host)
    return create_app(mem, mounts={"/mcp": mcp}, lifespans=[lambda _: mcp.run()])


def _routes(mem: StellarMemory) -> APIRouter:
    r = APIRouter()

    @r.get("/health", tags=["service"], summary="Liveness and the database (no API key)")
    def health() -> dict[str, Any]:
        mem.namespace  # noqa: B018
        with mem.engine.snapshot() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": VERSION}

    @r.get("/v1/namespaces", tags=["namespaces"], summary="Namespaces with live memories the caller may read")
    def namespaces(who: Caller) -> dict[str, Any]:
        return {"namespaces": mem.namespaces(principal=who)}

    @r.post(NS + "/memories", tags=["memories"], status_code=201, summary="Store one memory")
    def store(ns: str, item: StoreRequest, who: Caller) -> dict[str, Any]:
        return shapes.memory(mem.store(**item.model_dump(), namespace=ns, principal=who))

    @r.post(
        NS + "/memories/batch", tags=["memories"], status_code=201, summary="Store many in one transaction"
    )
    def store_many(ns: str, batch: StoreBatch, who: Caller) -> dict[str, Any]:
        stored = mem.store_many([i.model_dump() for i in batch.items], namespace=ns, principal=who)
        return {"memories": [shapes.memory(x) for x in stored]}

    @r.get(
        NS + "/memories", tags=["memories"], summary="Live memories, highest score first, a page at a time"
    )
    def memories(
        request: Request,
        ns: str,
        who: Caller,
        limit: Annotated[int, Query(ge=1, le=PAGE, description="Memories per page.")] = 100,
        offset: Annotated[int, Query(ge=0, description="Memories to skip (or follow `next`).")] = 0,
        zone: Annotated[list[ZoneName] | None, Query(description="Only these zones (repeatable).")] = None,
    ) -> dict[str, Any]:
        found = mem.memories(zones=zone, limit=limit + 1, offset=offset, namespace=ns, principal=who)
        more = len(found) > limit
        return {"memories": [shapes.memory(x) for x in found[:limit]], "offset": offset, "limit": limit,
                "next": _link(request, offset=offset + limit) if more else None}  # fmt: skip

    @r.get(NS + "/memories/{memory_id}", tags=["memories"], summary="One live memory")
    def get(ns: str, memory_id: str, who: Caller) -> dict[str, Any]:
        return shapes.memory(mem.get(memory_id, namespace=ns, principal=who))

    @r.patch(NS + "/memories/{memory_id}", tags=["memories"], summary="Change the given fields")
    def update(ns: str, memory_id: str, changes: UpdateRequest, who: Caller) -> dict[str, Any]:
        given = changes.model_dump(exclude_unset=True)
        return shapes.memory(mem.update(memory_id, **given, namespace=ns, principal=who))

    @r.delete(
        NS + "/memories/{memory_id}", tags=["memories"], summary="Forget a memory (it becomes a tombstone)"
    )
    def forget(ns: str, memory_id: str, who: Caller) -> dict[str, Any]:
        return shapes.memory(mem.forget(memory_id, namespace=ns, principal=who))

    @r.get(NS + "/memories/{memory_id}/links", tags=["links"], summary="Edges of a memory")
    def links(
        ns: str,
        memory_id: str,
        who: Caller,
        direction: Annotated[Direction, Query(description="Edges from it, to it, or both.")] = "both",
        kind: Annotated[str | None, Query(max_length=64, description="Only edges of this kind.")] = None,
    ) -> dict[str, Any]:
        found = mem.links(memory_id, direction=direction, kind=kind, namespace=ns, principal=who)
        return {"links": shapes.plain(found)}

    @r.post(NS + "/links", tags=["links"], status_code=201, summary="Link two memories")
    def link(ns: str, edge: LinkRequest, who: Caller) -> dict[str, Any]:
        return shapes.report(mem.link(**edge.model_dump(), namespace=ns, principal=who))

    @r.get(NS + "/recall", tags=["recall"], summary="Recall by query parameters")
    def recall_get(
        ns: str,
        who: Caller,
        q: Annotated[str, Query(min_length=1, description="What to recall, in words.")],
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        zone: Annotated[list[ZoneName] | None, Query(description="Only these zones (repeatable).")] = None,
        tag: Annotated[list[str] | None, Query(description="Only with every one of these tags.")] = None,
        since: Annotated[datetime | float | None, Query(description="Created at or after.")] = None,
        until: Annotated[datetime | float | None, Query(description="Created before.")] = None,
        source_type: Annotated[str | None, Query(max_length=64)] = None,
        expand: bool = False,
        count: bool = True,
    ) -> dict[str, Any]:
        asked = RecallRequest(query=q, k=k, zones=zone, tags=tag, since=since, until=until,
                              source_type=source_type, expand=expand, count=count)  # fmt: skip
        return _recall(mem, ns, asked, who)

    @r.post(NS + "/recall", tags=["recall"], summary="Recall with a JSON body")
    def recall_post(ns: str, asked: RecallRequest, who: Caller) -> dict[str, Any]:
        return _recall(mem, ns, asked, who)

    @r.get(NS + "/threads/{thread}", tags=["memories"], summary="A thread's memories in order")
    def thread(ns: str, thread: str, who: Caller) -> dict[str, Any]:
        return {"memories": [shapes.memory(x) for x in mem.thread(thread, namespace=ns, principal=who)]}

    @r.get(NS + "/stats", tags=["namespaces"], summary="Counts, zone sizes, mean score")
    def stats(ns: str, who: Caller) -> dict[str, Any]:
        return shapes.report(mem.stats(namespace=ns, principal=who))

    @r.get(NS + "/events", tags=["events"], summary="The change log, oldest first, after a seq")
    def events(
        request: Request,
        ns: str,
        who: Caller,
        after: Annotated[int, Query(ge=0, description="The last seq seen (0: from the start).")] = 0,
        limit: Annotated[int, Query(ge=1, le=PAGE)] = 100,
    ) -> dict[str, Any]:
        found = mem.events(after=after, limit=limit, oldest_first=True, namespace=ns, principal=who)
        last = found[-1].seq if found else after
        return {"events": [shapes.event(e) for e in found], "last": last,
                "next": _link(request, after=last) if len(found) == limit else None}  # fmt: skip

    @r.get(NS + "/sync", tags=["namespaces"], summary="memory_sync_status: this database as a replica")
    def sync_status(ns: str, who: Caller) -> dict[str, Any]:
        return shapes.sync_status(ns, mem.sync.configured, mem.sync.status(ns, principal=who))

    @r.get(NS + "/memories/{memory_id}/neighbourhood", tags=["graph"], summary="The memories within N hops")
    def neighbourhood(
        ns: str,
        memory_id: str,
        who: Caller,
        depth: Annotated[int, Query(ge=1, le=5, description="Hops to follow.")] = 1,
        limit: Annotated[int, Query(ge=1, le=PAGE, description="Memories to reach at most.")] = 50,
        direction: Annotated[Direction, Query(description="Follow links from, to, or both.")] = "both",
        kind: Annotated[str | None, Query(max_length=64, description="Only links of this kind.")] = None,
    ) -> dict[str, Any]:
        hood = mem.graph.neighbourhood(memory_id, depth=depth, limit=limit, direction=direction, kind=kind,
                                       namespace=ns, principal=who)  # fmt: skip
        return shapes.neighbourhood(hood)

    @r.get(NS + "/graph", tags=["graph"], summary="The namespace's memories and links as GraphML",
           response_class=Response, responses={200: {"content": {GRAPHML: {}}}})  # fmt: skip
    def graphml(ns: str, who: Caller) -> Response:
        return Response(mem.graph.graphml(namespace=ns, principal=who), media_type=GRAPHML)

    @r.get(NS + "/graph/centrality", tags=["graph"], summary="The most central memories, best first")
    def centrality(
        ns: str,
        who: Caller,
        kind: Annotated[
            Literal["pagerank", "degree"], Query(description="PageRank (weighted) or degree.")
        ] = ("pagerank"),
        limit: Annotated[int, Query(ge=1, le=PAGE)] = 20,
    ) -> dict[str, Any]:
        ranked = mem.graph.centrality(kind, limit=limit, namespace=ns, principal=who)
        return {"kind": kind, "ranking": [{"id": i, "score": v} for i, v in ranked]}

    @r.get(NS + "/graph/communities", tags=["graph"], summary="Groups of densely linked memories (Louvain)")
    def communities(
        ns: str,
        who: Caller,
        seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="Same seed, same answer.")] = 0,
    ) -> dict[str, Any]:
        return {"communities": mem.graph.communities(seed=seed, namespace=ns, principal=who)}

    @r.get(NS + "/graph/path", tags=["graph"], summary="The shortest chain of links between two memories")
    def path(
        ns: str,
        who: Caller,
        source: Annotated[str, Query(min_length=1, max_length=64, description="The first memory's id.")],
        target: Annotated[str, Query(min_length=1, max_length=64, description="The last memory's id.")],
    ) -> dict[str, Any]:
        return {"path": mem.graph.path(source, target, namespace=ns, principal=who)}

    @r.post(NS + "/ingest/url", tags=["ingest"], status_code=201, summary="Fetch a web page and store it")
    def ingest(ns: str, page: IngestUrlRequest, who: Caller) -> dict[str, Any]:
        return shapes.report(
            ingest_url(mem, page.url, namespace=ns, importance=page.importance, principal=who)
        )

    return r


def _recall(mem: StellarMemory, ns: str, asked: RecallRequest, who: Any) -> dict[str, Any]:
    kw = asked.model_dump(exclude={"query"})
    hits = mem.recall(asked.query, **kw, namespace=ns, principal=who)
    return {"query": asked.query, "hits": [shapes.hit(h, asked.query) for h in hits]}


def _link(request: Request, **params: int) -> str:
    """This request's path and query with ``params`` changed (a ``next`` page)."""
    url = request.url.include_query_params(**params)
    return f"{url.path}?{url.query}"
