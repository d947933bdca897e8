"""Stellar Memory as an MCP server (Model Context Protocol, official SDK ``mcp`` 2.x), so that
agents in any language, and MCP clients such as Claude Desktop, Claude Code or Cursor, store
and recall memories.

- ``build_server(mem)``: the server; its tools are the verbs (``memory_store``,
  ``memory_recall``, ``memory_get``, ``memory_update``, ``memory_forget``, ``memory_link``,
  ``memory_links``, ``memory_stats``, ``memory_sync_status``, ``memory_ingest_url``), each with
  an optional ``namespace`` (default: the memory's); its resources are the namespaces
  (``stellar://namespaces`` and ``stellar://namespaces/{namespace}``). A ``StellarError``
  becomes a tool error result (``isError``) naming the error; an unknown tool, a protocol error.
- ``serve_stdio(mem)``: ``stellar mcp``. A local process, trusted as the CLI is: it acts as
  the memory's own agent (``--agent`` or the settings).
- ``mcp_http_app(mem)``: the streamable HTTP endpoint, an ASGI app. Every request needs an
  API key (``Authorization: Bearer stk_...`` or ``X-API-Key``, checked by
  ``mem.security.authenticate``; 401 without one), and the tools act as that key's agent, so
  access control and the audit log apply per key. Stateless (decision 0033): each request
  stands alone, JSON responses, no session to pin to one process. Bodies over
  ``server_max_body_bytes`` get 413. ``serve_http(mem, host, port)``: ``stellar mcp
  --transport http``, the endpoint at ``/mcp`` on uvicorn.

Mounting the endpoint in another ASGI app (the FastAPI app of ``stellar serve``, say): the
SDK's session manager must run for as long as the host app does, so enter ``mcp.run()`` in
the host's lifespan, and route ``/mcp`` (every method) to the app itself::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from stellar_core.server.mcp import mcp_http_app

    mcp = mcp_http_app(mem, host=host)            # host: the address served (DNS-rebinding guard)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with mcp.run():                      # once per app: it cannot be entered again
            yield

    api = FastAPI(lifespan=lifespan)
    api.add_route("/mcp", mcp, methods=["GET", "POST", "DELETE"])   # not api.mount: see below

``add_route`` serves exactly ``/mcp``; ``api.mount("/mcp", ...)`` would serve ``/mcp/`` and
redirect ``/mcp`` to it. The app authenticates by itself: no FastAPI dependency is needed.

Adding a tool takes a few lines: a function in a tool set (see ``_memory_tools``) decorated
with ``server.tool(annotations=...)``, typed parameters with ``Field`` descriptions and
bounds, a docstring the model reads to choose it, calling the verb with ``principal=acting()``
and returning a shape of ``stellar_core.server.shapes``; a new set goes into ``TOOLSETS``.
"""

# No ``from __future__ import annotations`` here: the SDK reads the tools' signatures, whose
# bounds are taken from the memory's settings inside ``build_server``.

import contextlib
import contextvars
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stellar_core.errors import PermissionDenied, StellarError
from stellar_core.memory import StellarMemory
from stellar_core.models import Principal
from stellar_core.security import keys
from stellar_core.server import access, problems, shapes
from stellar_core.server.problems import Unauthorized
from stellar_core.validation import MAX_LINK_KIND, MAX_MEMORY_ID, MAX_SOURCE_URL, MAX_TAG, MAX_THREAD

__all__ = ["TOOLSETS", "McpHttpApp", "acting", "build_server", "mcp_http_app", "serve_http", "serve_stdio"]

SCOPE_KEY = "stellar.principal"  # where the HTTP authentication leaves the key's principal
MAX_K = 50  # hits a recall returns at most
MAX_DEPTH = 3  # hops memory_links walks at most
MAX_REACHED = 200  # memories memory_links returns at most
MAX_TAGS = 32

_acting: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("stellar_mcp_acting", default=None)

PrincipalFor = Callable[[Any], Principal | None]  # the transport's request (None on stdio) -> who acts
Toolset = Callable[[MCPServer[Any], StellarMemory], None]

Namespace = Annotated[
    str | None,
    Field(
        description="Namespace to work in (a hard partition between memory spaces); default: the "
        "server's namespace.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$",
    ),
]
MemoryId = Annotated[str, Field(description="A memory's id.", min_length=1, max_length=MAX_MEMORY_ID)]
Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG)]
Tags = Annotated[list[Tag] | None, Field(description="Tags (labels) of the memory.", max_length=MAX_TAGS)]
Importance = Annotated[float, Field(description="How much it matters, 0..1.", ge=0.0, le=1.0)]
NewImportance = Annotated[float | None, Field(description="New importance, 0..1.", ge=0.0, le=1.0)]
Metadata = Annotated[
    dict[str, Any] | None, Field(description="Free-form JSON metadata kept with the memory (an object).")
]
Kind = Annotated[str, Field(description="Link kind.", min_length=1, max_length=MAX_LINK_KIND)]
ZoneName = Literal["core", "inner", "outer", "belt", "cloud"]

READS = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
REMOVES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
LINKS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
FETCHES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


def acting() -> Principal | None:
    """Who the current MCP request acts as (None: the memory's own agent, as on stdio)."""
    return _acting.get()


def request_principal(request: Any) -> Principal | None:
    """The default ``principal_for_request``: none on stdio (the memory's own agent); over
    HTTP the principal the API-key check left in the request's scope, and a refusal if there
    is none (an endpoint mounted without its authentication acts for nobody)."""
    if request is None:
        return None
    who = getattr(request, "scope", {}).get(SCOPE_KEY)
    if not isinstance(who, Principal):
        raise PermissionDenied("this request carries no authenticated principal")
    return who


class _Server(MCPServer[Any]):
    """``MCPServer`` with Stellar's error conventions: an unknown tool is a protocol error
    (invalid params), a ``StellarError`` from a verb a tool error result that names it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tool_names: set[str] = set()
        super().__init__(*args, **kwargs)

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.tool_names.add(name or fn.__name__)
        super().add_tool(fn, name, *args, **kwargs)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if name not in self.tool_names:
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, StellarError):
                return _error_result(exc.__cause__)
            raise


def _error_result(exc: StellarError) -> CallToolResult:
    text = f"{type(exc).__name__}: {exc}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def build_server(
    mem: StellarMemory, principal_for_request: PrincipalFor = request_principal
) -> MCPServer[Any]:
    """The MCP server over ``mem``: the tools of ``TOOLSETS`` and the namespace resources.

    ``principal_for_request`` maps the transport's request (a Starlette ``Request`` over
    HTTP, None on stdio) to the principal the tools act as (None: the memory's own agent).
    """

    async def act_as(ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        token = _acting.set(principal_for_request(ctx.request))  # the handler's task and threads see it
        try:
            return await call_next(ctx)
        finally:
            _acting.reset(token)

    server = _Server(
        "stellar-memory",
        title="Stellar Memory",
        instructions=(
            "Shared long-term memory. Before answering, memory_recall what may already be known; "
            "memory_store durable facts, decisions and preferences (one fact per memory); "
            f"memory_get / memory_update / memory_forget by id. Namespace by default: {mem.namespace!r}."
        ),
        version=_version(),
        log_level="WARNING",
        middleware=[act_as],
    )
    for add in TOOLSETS:
        add(server, mem)
    _resources(server, mem)
    return server


# --- the tools ----------------------------------------------------------------------------
def _memory_tools(server: MCPServer[Any], mem: StellarMemory) -> None:
    """The verbs of ``StellarMemory`` as tools."""
    ns_default = mem.namespace
    most = mem.settings.max_content_chars

    @server.tool(annotations=WRITES)
    def memory_store(
        content: Annotated[str, Field(description="The memory's text.", min_length=1, max_length=most)],
        importance: Importance = 0.5,
        tags: Tags = None,
        pinned: Annotated[bool, Field(description="Never forget this memory.")] = False,
        metadata: Metadata = None,
        thread: Annotated[
            str | None,
            Field(description="Conversation, session or document it belongs to.", max_length=MAX_THREAD),
        ] = None,
        encrypted: Annotated[bool, Field(description="Keep its content encrypted at rest.")] = False,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Store one memory: a fact, decision, preference or event worth remembering later.

        Use it for durable information (one self-contained fact per memory, with the context
        needed to understand it alone). Storing the same content again returns the existing
        memory. Returns the stored memory: id, content, zone, score, tags, metadata, times."""
        return shapes.memory(mem.store(
            content, importance=importance, pinned=pinned, tags=tags or (), metadata=metadata,
            thread=thread, encrypted=encrypted, namespace=namespace, principal=acting(),
        ))  # fmt: skip

    @server.tool(annotations=READS)
    def memory_recall(
        query: Annotated[
            str, Field(description="What to look for, in natural language.", min_length=1, max_length=most)
        ],
        k: Annotated[int, Field(description="How many memories to return.", ge=1, le=MAX_K)] = 5,
        zones: Annotated[
            list[ZoneName] | None,
            Field(description="Only memories in these zones (core = most alive, cloud = fading)."),
        ] = None,
        tags: Annotated[
            list[Tag] | None,
            Field(description="Only memories carrying every one of these tags.", max_length=MAX_TAGS),
        ] = None,
        expand: Annotated[bool, Field(description="Also return memories linked to the hits.")] = False,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Find the memories most relevant to a query (hybrid semantic + keyword search), best first.

        Use it before answering anything that earlier conversations, documents or other agents
        may have covered. Returns ``hits``: each memory with its ``relevance``, the search arms
        that found it (``via``) and a ``snippet`` holding the query's words."""
        hits = mem.recall(query, k=k, zones=zones, tags=tags, expand=expand, namespace=namespace,
                          principal=acting())  # fmt: skip
        return {
            "namespace": namespace or ns_default,
            "query": query,
            "hits": [shapes.hit(h, query) for h in hits],
        }

    @server.tool(annotations=READS)
    def memory_get(memory_id: MemoryId, namespace: Namespace = None) -> dict[str, Any]:
        """One memory by id, with every field. Use it to read a memory named by a recall hit, a
        link or the user. Fails with NotFoundError if it does not exist or was forgotten."""
        return shapes.memory(mem.get(memory_id, namespace=namespace, principal=acting()))

    @server.tool(annotations=CHANGES)
    def memory_update(
        memory_id: MemoryId,
        content: Annotated[str | None, Field(description="New text.", min_length=1, max_length=most)] = None,
        importance: NewImportance = None,
        pinned: Annotated[
            bool | None, Field(description="Never forget it (true) or allow it (false).")
        ] = None,
        tags: Tags = None,
        metadata: Metadata = None,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Change some fields of a memory (content, importance, pinned, tags, metadata); the
        others stay as they are. Use it to correct or refine a memory rather than storing a
        second, contradicting one. Returns the updated memory."""
        return shapes.memory(mem.update(
            memory_id, content=content, importance=importance, pinned=pinned, tags=tags,
            metadata=metadata, namespace=namespace, principal=acting(),
        ))  # fmt: skip

    @server.tool(annotations=REMOVES)
    def memory_forget(memory_id: MemoryId, namespace: Namespace = None) -> dict[str, Any]:
        """Forget a memory: it disappears from recall and get at once (and is purged later).
        Use it for information that is wrong, obsolete or that the user asks to remove.
        Returns the forgotten memory (a tombstone)."""
        return shapes.memory(mem.forget(memory_id, namespace=namespace, principal=acting()))

    @server.tool(annotations=LINKS)
    def memory_link(
        source_id: Annotated[
            str, Field(description="The memory the link starts from.", min_length=1, max_length=MAX_MEMORY_ID)
        ],
        target_id: Annotated[
            str, Field(description="The memory it points to.", min_length=1, max_length=MAX_MEMORY_ID)
        ],
        kind: Kind = "related",
        weight: Annotated[float, Field(description="Strength of the link, in (0, 1].", gt=0.0, le=1.0)] = 1.0,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Link two memories with a directed, typed, weighted edge (kinds such as related,
        causes, contradicts, part_of, follows). Linking the pair again with that kind sets the
        weight. Links let recall (expand) and memory_links bring related memories along.
        Returns the link."""
        link = mem.link(
            source_id, target_id, kind=kind, weight=weight, namespace=namespace, principal=acting()
        )
        return shapes.report(link)

    @server.tool(annotations=READS)
    def memory_links(
        memory_id: MemoryId,
        direction: Annotated[
            Literal["both", "out", "in"],
            Field(description="Links from the memory (out), to it (in), or both."),
        ] = "both",
        kind: Annotated[
            str | None, Field(description="Only links of this kind.", max_length=MAX_LINK_KIND)
        ] = None,
        depth: Annotated[
            int,
            Field(
                description="Hops to follow: 1 = direct links; more = the neighbourhood.", ge=1, le=MAX_DEPTH
            ),
        ] = 1,
        limit: Annotated[int, Field(description="Most memories to reach.", ge=1, le=MAX_REACHED)] = 50,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """A memory's links, and with depth > 1 its neighbourhood: the memories reachable within
        that many hops (at most ``limit``). Use it to explore what is connected to a memory.
        Returns ``links`` (source_id, target_id, kind, weight) and ``memories`` reached, each
        with its distance in ``hops``; ``truncated`` if the limit cut the walk short."""
        hood = mem.graph.neighbourhood(memory_id, depth=depth, limit=limit, direction=direction, kind=kind,
                                       namespace=namespace, principal=acting())  # fmt: skip
        return {**shapes.neighbourhood(hood), "depth": depth}

    @server.tool(annotations=READS)
    def memory_stats(namespace: Namespace = None) -> dict[str, Any]:
        """Counts of a namespace: memories, forgotten ones, links, threads, memories per zone
        (core, inner, outer, belt, cloud) and the mean score. Use it to see how much is known."""
        return shapes.report(mem.stats(namespace=namespace, principal=acting()))

    @server.tool(annotations=READS)
    def memory_sync_status(namespace: Namespace = None) -> dict[str, Any]:
        """How far this memory's replication with other replicas is (through Redis): changes not
        yet published, events not yet applied, lag, open conflicts. Use it to know whether
        other agents' latest memories have arrived. Without sync configured, says so."""
        ns = namespace or mem.namespace
        return shapes.sync_status(ns, mem.sync.configured, mem.sync.status(ns, principal=acting()))

    @server.tool(annotations=FETCHES)
    def memory_ingest_url(
        url: Annotated[
            str,
            Field(
                description="http(s) URL of the page.",
                min_length=8,
                max_length=MAX_SOURCE_URL,
                pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
            ),
        ],
        importance: Importance = 0.5,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Fetch a web page and store its main text as memories (chunked, with its source URL).
        Ingesting the same page again stores nothing unless it changed. Private and local
        addresses are refused unless the server allows them. Returns counts: sources, chunks,
        new, unchanged, replaced, and what was skipped with why."""
        from stellar_core.connectors.web import ingest_url

        return ingest_url(mem, url, namespace=namespace, importance=importance, principal=acting()).to_dict()


def _graph_tools(server: MCPServer[Any], mem: StellarMemory) -> None:
    """The namespace's link graph: the most central memories, communities, paths."""

    @server.tool(annotations=READS)
    def memory_graph_central(
        kind: Annotated[
            Literal["pagerank", "degree"],
            Field(description="pagerank (links weighted by their weight) or degree (links in and out)."),
        ] = "pagerank",
        limit: Annotated[int, Field(description="How many memories.", ge=1, le=MAX_K)] = 10,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """The most central memories of the namespace's link graph, best first: the hubs that
        much else links to. Use it for an overview of what matters most. Returns ``memories``
        with their ``centrality`` score."""
        who = acting()
        ranked = mem.graph.centrality(kind, limit=limit, namespace=namespace, principal=who)
        found = [(mem.get(i, namespace=namespace, principal=who), score) for i, score in ranked]
        return {"kind": kind, "memories": [{**shapes.memory(x), "centrality": v} for x, v in found]}

    @server.tool(annotations=READS)
    def memory_graph_communities(
        limit: Annotated[
            int, Field(description="How many communities (largest first).", ge=1, le=MAX_K)
        ] = 10,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Groups of densely linked memories (Louvain), largest first, each as its memory ids.
        Use it to see the topics the memory holds; memory_get reads a member."""
        groups = mem.graph.communities(namespace=namespace, principal=acting())
        return {
            "communities": [{"size": len(g), "memory_ids": g} for g in groups[:limit]],
            "total": len(groups),
        }

    @server.tool(annotations=READS)
    def memory_graph_path(
        source_id: MemoryId, target_id: MemoryId, namespace: Namespace = None
    ) -> dict[str, Any]:
        """The shortest chain of links (followed either way) from one memory to another, both
        ends included: how two facts are connected. NotFoundError if none joins them."""
        who = acting()
        chain = mem.graph.path(source_id, target_id, namespace=namespace, principal=who)
        return {"path": [shapes.memory(mem.get(i, namespace=namespace, principal=who)) for i in chain]}


TOOLSETS: list[Toolset] = [_memory_tools, _graph_tools]  # a set of tools is a function (server, mem) -> None


# --- the resources ------------------------------------------------------------------------
@contextlib.contextmanager
def _reading(uri: str) -> Iterator[None]:
    try:
        yield
    except StellarError as exc:
        raise ResourceError(f"{uri}: {type(exc).__name__}: {exc}") from exc


def _resources(server: MCPServer[Any], mem: StellarMemory) -> None:
    @server.resource(
        "stellar://namespaces",
        name="namespaces",
        description="The namespaces that hold memories (those this principal may read), with their URIs.",
        mime_type="application/json",
    )
    def namespaces() -> str:
        with _reading("stellar://namespaces"):
            names = mem.namespaces(principal=acting())
        listed = [{"name": ns, "uri": f"stellar://namespaces/{ns}"} for ns in names]
        return json.dumps({"default": mem.namespace, "namespaces": listed})

    @server.resource(
        "stellar://namespaces/{namespace}",
        name="namespace",
        description="One namespace: its counts and zone sizes, zone thresholds and capacities, and its "
        "ten highest-scored memories.",
        mime_type="application/json",
    )
    def namespace(namespace: str) -> str:
        who = acting()
        with _reading(f"stellar://namespaces/{namespace}"):
            stats = shapes.report(mem.stats(namespace=namespace, principal=who))
            policy = shapes.plain(mem.zone_policy(namespace, principal=who))
            top = mem.memories(limit=10, namespace=namespace, principal=who)
        return json.dumps(
            {**stats, "zone_policy": policy, "top": [shapes.memory(x) for x in top]}, default=str
        )


# --- transports ---------------------------------------------------------------------------
def serve_stdio(mem: StellarMemory) -> None:
    """Serve MCP on stdin/stdout until the client closes them, acting as ``mem``'s agent."""
    build_server(mem).run("stdio")


class McpHttpApp:
    """The streamable HTTP endpoint (an ASGI app) with API-key authentication; enter ``run()``
    in the host app's lifespan (see the module docstring)."""

    def __init__(self, mem: StellarMemory, *, host: str = "127.0.0.1", stateless: bool = True,
                 principal_for_request: PrincipalFor = request_principal) -> None:  # fmt: skip
        self.mem, self.keys = mem, access.Keys(mem)  # checked keys trusted briefly, as by the API
        self.server = build_server(mem, principal_for_request)
        # Builds the SDK's session manager (our own routing wraps it); JSON answers, no SSE.
        self.server.streamable_http_app(
            stateless_http=stateless, json_response=True, host=host,
            max_request_body_size=mem.settings.server_max_body_bytes,
        )  # fmt: skip
        self.session_manager: StreamableHTTPSessionManager = self.server.session_manager

    def run(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The session manager's lifetime: requests are served only inside it (once per app)."""
        return self.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.session_manager.handle_request(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        try:
            key = access.presented(conn)
            if key is None:
                raise Unauthorized("an API key is required: Authorization: Bearer stk_... (or X-API-Key)")
            who = self.keys.cached(key)
            if who is None:  # the database is asked: not on the event loop
                who = await anyio.to_thread.run_sync(self.keys.principal, key)
        except Unauthorized as exc:
            # the HTTP API's problem details, and the same WWW-Authenticate challenge
            await problems.problem(401, str(exc.detail), conn.url.path, headers=dict(exc.headers or {}))(
                scope, receive, send
            )
            return
        token = AccessToken(token=keys.parse(key)[0], client_id=who.id, scopes=[])  # the key's id, not secret
        scope = {**scope, SCOPE_KEY: who, "user": AuthenticatedUser(token)}  # the SDK binds sessions to it
        await self.session_manager.handle_request(scope, receive, send)

    def starlette(self, path: str = "/mcp") -> Starlette:
        """A standalone app: this endpoint at ``path``, the session manager in its lifespan."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with self.run():
                yield

        return Starlette(routes=[Route(path, self, methods=["GET", "POST", "DELETE"])], lifespan=lifespan)


def mcp_http_app(
    mem: StellarMemory,
    *,
    host: str = "127.0.0.1",
    stateless: bool = True,
    principal_for_request: PrincipalFor = request_principal,
) -> McpHttpApp:
    """The MCP streamable HTTP endpoint over ``mem`` (see ``McpHttpApp`` and the module
    docstring for mounting it). ``host``: the address it is served on; on a loopback address
    the SDK's DNS-rebinding guard accepts only loopback ``Host`` and ``Origin`` headers.
    ``stateless=False``: sessions (``Mcp-Session-Id``) held in this process, bound to the
    key's agent; a client must then always reach the same process."""
    return McpHttpApp(mem, host=host, stateless=stateless, principal_for_request=principal_for_request)


def serve_http(mem: StellarMemory, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the endpoint at ``http://host:port/mcp`` until interrupted."""
    import uvicorn

    uvicorn.run(mcp_http_app(mem, host=host).starlette(), host=host, port=port, log_level="warning")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stellar-memory")
    except PackageNotFoundError:
        return "0"
