"""The HTTP API against in-process calls on the same store: added latency, requests per
second, events per second through the live stream::

    python -m benchmarks.bench_serve                  # 2k memories, 200 queries, 8 clients x 5 s, 2k events
    python -m benchmarks.bench_serve --quick          # smoke run: 300 memories, 50 queries, 2 s, 300 events

What is measured (the real embedding model; its query cache off, so that every recall embeds
its query in both columns; a SQLite store in a temporary directory):

1. Recall latency, in process (``mem.recall``) and through the API (``GET .../recall`` from
   one keep-alive httpx client), the same ``--queries`` queries in both, interleaved, statistics not
   counted; the difference of the percentiles is what HTTP adds (routing, the API key from
   its cache, JSON, the thread pool, loopback TCP).
2. Requests per second with ``--clients`` concurrent clients (threads, one keep-alive
   connection each) for ``--seconds``: recall, and get by id.
3. Events per second through the stream: an SSE and a WebSocket client follow the namespace
   while ``--events`` memories are stored through the API (batches of 500); the rate is
   counted from a client's first event to its last, and the tail from the last store's
   return to the last event.

The server is ``stellar serve``'s app on uvicorn in a process of its own; the clients share
this process (and the machine's cores) with the in-process memory. The MCP server, served at
``/mcp`` of the same app, is measured the same way by ``benchmarks.bench_mcp`` (its SDK client
is async and brings its own loop).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from benchmarks.bench_core import percentiles_ms
from stellar_core import SentenceTransformerEmbedder, Settings, StellarMemory

TOPICS = [
    "backup",
    "rota",
    "database",
    "deploy",
    "satellite",
    "antenna",
    "budget",
    "hiring",
    "release",
    "incident",
]
NS = "bench"


def corpus(n: int) -> list[str]:
    return [
        f"Note {i}: the {TOPICS[i % 10]} plan for week {i // 10} was agreed by team {i % 37}."
        for i in range(n)
    ]


def queries(n: int) -> list[str]:
    return [f"what was agreed about the {TOPICS[i % 10]} plan in week {i * 7 % 200}?" for i in range(n)]


def settings() -> Settings:
    return Settings(query_cache_size=0)


def serve(db: str, port: int) -> None:
    import uvicorn

    from stellar_core.server.http import create_app

    with StellarMemory(db, settings=settings(), agent="api") as mem:
        uvicorn.run(create_app(mem), host="127.0.0.1", port=port, log_level="warning")


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def rate(url: str, key: str, clients: int, seconds: float, path: Any) -> float:
    """Requests per second, ``clients`` threads asking ``path(i)`` in a loop for ``seconds``."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
            i = n
            while time.monotonic() < stop:
                c.get(path(i)).raise_for_status()
                done[n] += 1
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def follow_sse(
    url: str, key: str, n: int, out: dict[str, Any], ready: threading.Event, after: int | None = None
) -> None:
    params = {} if after is None else {"after": after}
    with (
        httpx.Client(base_url=url, timeout=120) as c,
        c.stream("GET", f"/v1/namespaces/{NS}/events/stream", headers={"X-API-Key": key}, params=params) as r,
    ):
        ready.set()
        got, first = 0, 0.0
        for line in r.iter_lines():
            if line.startswith("id:"):
                got += 1
                first = first or time.perf_counter()
                if got == n:
                    break
        out["sse"] = (first, time.perf_counter())


def follow_ws(
    url: str, key: str, n: int, out: dict[str, Any], ready: threading.Event, after: int | None = None
) -> None:
    query = "" if after is None else f"?after={after}"
    with connect(url.replace("http", "ws") + f"/v1/namespaces/{NS}/events/ws{query}",
                 additional_headers={"X-API-Key": key}, max_size=None) as ws:  # fmt: skip
        ready.set()
        first = 0.0
        for i in range(n):
            json.loads(ws.recv(timeout=120))
            first = first or time.perf_counter()
            if i == n - 1:
                out["ws"] = (first, time.perf_counter())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memories", type=int, default=2000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--port", type=int, default=18_765)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.memories, a.queries, a.seconds, a.events = 300, 50, 2.0, 300
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    db = str(root / "bench.db")
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["load the model"])
    with StellarMemory(db, settings=settings(), embedder=embedder, agent="bench", background=False) as mem:
        texts = corpus(a.memories)
        ids = [
            x.id for i in range(0, len(texts), 256) for x in mem.store_many(texts[i : i + 256], namespace=NS)
        ]
        key = mem.security.create_api_key("bench")
        server = multiprocessing.get_context("spawn").Process(target=serve, args=(db, a.port), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{a.port}"
        try:
            wait_up(url)
            asked = queries(a.queries)
            mem.recall(asked[0], namespace=NS, count=False)  # warm both
            local: list[float] = []
            remote: list[float] = []
            path = f"/v1/namespaces/{NS}/recall"
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
                c.get(path, params={"q": asked[0], "count": False}).raise_for_status()
                for n, q in enumerate(asked):  # interleaved, each side first half the time
                    for side in (0, 1) if n % 2 else (1, 0):
                        t = time.perf_counter()
                        if side == 0:
                            mem.recall(q, k=10, namespace=NS, count=False)
                            local.append(time.perf_counter() - t)
                        else:
                            c.get(path, params={"q": q, "k": 10, "count": False}).raise_for_status()
                            remote.append(time.perf_counter() - t)
            lp, hp = percentiles_ms(local), percentiles_ms(remote)
            print(f"\nrecall latency, {a.memories} memories, {a.queries} queries (ms)")
            print(f"{'':>14} {'in-process':>11} {'HTTP':>9} {'added':>9}")
            for i, name in enumerate(("p50", "p95", "mean")):
                print(f"{name:>14} {lp[i]:>11.1f} {hp[i]:>9.1f} {hp[i] - lp[i]:>9.1f}")

            recall_rps = rate(url, key, a.clients, a.seconds,
                              lambda i: f"/v1/namespaces/{NS}/recall?q={asked[i % len(asked)]}"
                              "&count=false")  # fmt: skip
            get_rps = rate(
                url, key, a.clients, a.seconds, lambda i: f"/v1/namespaces/{NS}/memories/{ids[i % len(ids)]}"
            )
            print(f"\nrequests/s, {a.clients} concurrent clients, {a.seconds:.0f} s each")
            print(f"{'recall':>14} {recall_rps:>11.0f}")
            print(f"{'get':>14} {get_rps:>11.0f}")

            out: dict[str, Any] = {}
            ready = [threading.Event(), threading.Event()]
            followers = [
                threading.Thread(target=follow_sse, args=(url, key, a.events, out, ready[0])),
                threading.Thread(target=follow_ws, args=(url, key, a.events, out, ready[1])),
            ]
            for t in followers:
                t.start()
            for r in ready:
                r.wait(30)
            time.sleep(0.5)
            new = corpus(a.memories + a.events)[a.memories :]
            seq0 = mem.events(limit=1, namespace=NS)[0].seq
            started = time.perf_counter()
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as c:
                for i in range(0, len(new), 500):
                    items = [{"content": t} for t in new[i : i + 500]]
                    c.post(f"/v1/namespaces/{NS}/memories/batch", json={"items": items}).raise_for_status()
            stored = time.perf_counter()
            for t in followers:
                t.join(300)
            print(
                f"\nevents through the stream: {a.events} stores "
                f"(batches of 500, {stored - started:.1f} s with embedding)"
            )
            for name in ("sse", "ws"):
                if name not in out:
                    print(f"{name:>14} did not receive every event")
                    continue
                first, last = out[name]
                per_s = a.events / max(last - first, 1e-9)
                print(f"{name:>14} live: {per_s:>7.0f} events/s (first to last, paced by the stores); "
                      f"last event {1000 * (last - stored):.0f} ms after the last store")  # fmt: skip
            for name, follow in (("sse", follow_sse), ("ws", follow_ws)):
                replay: dict[str, Any] = {}
                t0 = time.perf_counter()
                follow(url, key, a.events, replay, threading.Event(), seq0)
                if name in replay:
                    took = replay[name][1] - t0
                    print(f"{name:>14} replay: {a.events / took:>7.0f} events/s ({a.events} events after a "
                          f"reconnect, {1000 * took:.0f} ms from connecting)")  # fmt: skip
        finally:
            server.terminate()
            server.join(10)


if __name__ == "__main__":
    main()
