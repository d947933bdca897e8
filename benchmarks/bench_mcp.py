"""Recall through the MCP server (streamable HTTP, the SDK's own client) against the same
recall in-process, on one SQLite memory; and tool calls per second with concurrent clients.

The server runs in a process of its own (as it would in production), on loopback, with API-key
authentication; the clients run here. Synthetic vectors by default (the embedding model would
add the same time to both sides); ``--real`` uses the real model instead. Prints p50 / p95 of
each side and the added latency, then calls per second::

    python -m benchmarks.bench_mcp                      # 2,000 memories, 200 queries, 8 clients
    python -m benchmarks.bench_mcp --memories 10000 --clients 1 8 16 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import Corpus, SyntheticEmbedder, percentiles_ms
from stellar_core import Settings, StellarMemory
from tests.services import free_port, wait_for_port

SEED = 7


def _embedder(n: int, queries: int, real: bool) -> tuple[Any, list[dict[str, Any]], list[str]]:
    items, vectors = Corpus(SEED).memories(n, "mcp")
    asked, qv = Corpus(SEED + 1).queries(queries)
    if real:
        from stellar_core.embeddings import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(), items, asked
    import numpy as np

    texts = [x["content"] for x in items] + asked
    return SyntheticEmbedder(texts, np.vstack([vectors, qv])), items, asked


def serve(db: str, port: int, n: int, queries: int, real: bool, stateless: bool) -> None:
    """The server process: the same memory (and embedder), the MCP endpoint on ``port``."""
    import uvicorn

    from stellar_core.server.mcp import mcp_http_app

    embedder, _, _ = _embedder(n, queries, real)
    with StellarMemory(db, embedder=embedder, settings=Settings(), agent="server") as mem:
        app = mcp_http_app(mem, stateless=stateless).starlette()
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def _client(url: str, key: str) -> Any:
    from contextlib import AsyncExitStack

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    stack = AsyncExitStack()
    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    )
    read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return stack, session


async def mcp_latency(url: str, key: str, queries: Sequence[str], k: int) -> list[float]:
    stack, s = await _client(url, key)
    async with stack:
        for q in queries[:20]:  # warm-up
            await s.call_tool("memory_recall", {"query": q, "k": k})
        took = []
        for q in queries:
            started = time.perf_counter()
            result = await s.call_tool("memory_recall", {"query": q, "k": k})
            took.append(time.perf_counter() - started)
            assert not result.is_error, result.content
        return took


async def throughput(
    url: str, key: str, clients: int, seconds: float, tool: str, args: list[dict[str, Any]]
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def one(i: int) -> None:
        nonlocal done
        stack, s = await _client(url, key)
        async with stack:
            j = i
            while time.perf_counter() < deadline:
                result = await s.call_tool(tool, args[j % len(args)])
                assert not result.is_error, result.content
                done += 1
                j += clients

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(one, i)
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--memories", type=int, default=2_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    p.add_argument("--seconds", type=float, default=8.0, help="per throughput run")
    p.add_argument(
        "--real", action="store_true", help="the real embedding model (default: synthetic vectors)"
    )
    p.add_argument("--stateful", action="store_true", help="sessions instead of stateless requests")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        embedder, items, queries = _embedder(args.memories, args.queries, args.real)
        with StellarMemory(db, embedder=embedder, agent="bench") as mem:
            for i in range(0, len(items), 500):
                mem.store_many(items[i : i + 500])
            key = mem.security.create_api_key("bench")
            ids = [x.id for x in mem.memories(limit=500)]
            mem.warm()
            for q in queries[:20]:
                mem.recall(q, k=args.k)
            local = []
            for q in queries:
                started = time.perf_counter()
                mem.recall(q, k=args.k)
                local.append(time.perf_counter() - started)
            mem.flush()

        port = free_port()
        ctx = multiprocessing.get_context("spawn")
        server = ctx.Process(
            target=serve,
            args=(db, port, args.memories, args.queries, args.real, not args.stateful),
            daemon=True,
        )
        server.start()
        try:
            wait_for_port(port, "the MCP server", timeout=120)
            url = f"http://127.0.0.1:{port}/mcp"
            remote = anyio.run(mcp_latency, url, key, queries, args.k)
            rates = {}
            calls = {
                "memory_recall": [{"query": q, "k": args.k} for q in queries],
                "memory_get": [{"memory_id": i} for i in ids],
            }
            for tool, tool_args in calls.items():
                for n in args.clients:
                    rates[(tool, n)] = anyio.run(throughput, url, key, n, args.seconds, tool, tool_args)
        finally:
            server.terminate()
            server.join(10)

    lp50, lp95, _ = percentiles_ms(local)
    rp50, rp95, _ = percentiles_ms(remote)
    model = "real model" if args.real else "synthetic vectors"
    mode = "stateful" if args.stateful else "stateless"
    print(
        f"MCP recall, {args.memories:,} memories, {len(queries)} queries, k={args.k}, {model}, SQLite, {mode}"
    )
    print(f"  in-process           p50 {lp50:7.2f} ms   p95 {lp95:7.2f} ms")
    print(f"  MCP streamable HTTP  p50 {rp50:7.2f} ms   p95 {rp95:7.2f} ms")
    print(f"  added by MCP         p50 {rp50 - lp50:7.2f} ms   p95 {rp95 - lp95:7.2f} ms")
    for (tool, n), rate in rates.items():
        print(f"  {tool:<14} {n:>2} concurrent clients: {rate:8.1f} calls/s")


if __name__ == "__main__":
    main()
