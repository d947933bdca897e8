"""The live event stream of the HTTP API, on a real uvicorn: Server-Sent Events and WebSocket,
resuming after a reconnect with nothing lost or repeated, clients leaving mid-stream, writes
by another process, a revoked key, and (with sync over a real Redis) another replica's
changes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from fastapi import FastAPI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from stellar_core import Settings, StellarMemory
from stellar_core.server.http import create_app
from tests.api_server import running
from tests.services import Redis

Open = Callable[..., StellarMemory]
EVENTS = "/v1/namespaces/ops/events"


@dataclass
class Api:
    mem: StellarMemory
    url: str
    key: str
    app: FastAPI

    def sse(self, **kw: Any) -> Sse:
        return Sse(self, **kw)

    def ws(self, after: int | None = None, key: bool = True) -> ClientConnection:
        query = "" if after is None else f"?after={after}"
        headers = {"Authorization": f"Bearer {self.key}"} if key else {}
        return connect(self.url.replace("http", "ws") + EVENTS + "/ws" + query, additional_headers=headers)


class Sse:
    """An SSE client read in the test's thread: ``take`` parses events until it has ``n``."""

    def __init__(self, api: Api, last_event_id: int | None = None, after: int | None = None) -> None:
        headers = {"Authorization": f"Bearer {api.key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        params = {} if after is None else {"after": after}
        self.client = httpx.Client(base_url=api.url, timeout=httpx.Timeout(10.0))
        self._cm = self.client.stream("GET", EVENTS + "/stream", headers=headers, params=params)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.lines = self.response.iter_lines()
        self.comments: list[str] = []

    def take(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        fields: dict[str, str] = {}
        while len(out) < n:
            line = next(self.lines)
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif "data" in fields:
                out.append({"id": int(fields["id"]) if "id" in fields else None,
                            "event": fields.get("event"), "data": json.loads(fields["data"])})  # fmt: skip
                fields = {}
            else:
                fields = {}
        return out

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


@pytest.fixture
def serve(open_memory: Open) -> Iterator[Callable[..., Api]]:
    opened: list[Any] = []

    def _serve(settings: Settings | None = None, **kw: Any) -> Api:
        mem = open_memory(settings=settings or Settings(server_poll_seconds=0.1), agent="root", **kw)
        app = create_app(mem)
        ctx = running(app)
        url = ctx.__enter__()
        opened.append(ctx)
        return Api(mem, url, mem.security.create_api_key("alice"), app)

    yield _serve
    for ctx in reversed(opened):
        ctx.__exit__(None, None, None)


def store(mem: StellarMemory, *texts: str) -> list[str]:
    return [x.id for x in mem.store_many(list(texts), namespace="ops")]


def ws_take(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=10)) for _ in range(n)]


def test_sse_live_then_resume_with_last_event_id(serve: Callable[..., Api]) -> None:
    api = serve()
    store(api.mem, "before the stream opened")
    stream = api.sse()  # from now: the memory above is not replayed
    first = store(api.mem, "one", "two", "three")
    got = stream.take(3)
    assert [e["data"]["memory_id"] for e in got] == first
    assert [e["id"] for e in got] == [e["data"]["seq"] for e in got] == sorted(e["id"] for e in got)
    stream.close()

    missed = store(api.mem, "four", "five")  # while disconnected
    again = api.sse(last_event_id=got[-1]["id"], after=0)  # the header wins over ?after
    later = store(api.mem, "six")
    back = again.take(3)
    assert [e["data"]["memory_id"] for e in back] == [*missed, *later]  # none lost, none twice
    again.close()

    replay = api.sse(after=0)
    assert len(replay.take(7)) == 7  # after=0: the whole log
    replay.close()


def test_websocket_resume_with_after_and_a_key_in_the_first_message(serve: Callable[..., Api]) -> None:
    api = serve()
    with api.ws() as ws:
        first = store(api.mem, "one", "two")
        got = ws_take(ws, 2)
        assert [m["event"]["memory_id"] for m in got] == first and got[0]["id"] == got[0]["event"]["seq"]
    missed = store(api.mem, "three", "four")
    with api.ws(after=got[-1]["id"]) as ws:
        assert [m["event"]["memory_id"] for m in ws_take(ws, 2)] == missed
    with api.ws(after=got[-1]["id"], key=False) as ws:  # browsers: no headers on a WebSocket
        ws.send(json.dumps({"api_key": api.key}))
        assert [m["event"]["memory_id"] for m in ws_take(ws, 2)] == missed
    with api.ws(key=False) as ws:
        ws.send(json.dumps({"api_key": "stk_wrong_key"}))
        with pytest.raises(Exception):  # noqa: B017  (closed with 4401)
            ws.recv(timeout=5)
        assert ws.close_code == 4401
    with pytest.raises(InvalidStatus) as refused:  # a bad key in the handshake: refused with a problem
        connect(api.url.replace("http", "ws") + EVENTS + "/ws", additional_headers={"X-API-Key": "nope"})
    assert refused.value.response.status_code == 401


def test_a_client_leaving_mid_stream_does_not_stop_the_others(serve: Callable[..., Api]) -> None:
    api = serve()
    hub = api.app.state.hub
    leaving, staying = api.sse(), api.ws()
    first = store(api.mem, *(f"burst {i}" for i in range(20)))
    assert [e["data"]["memory_id"] for e in leaving.take(3)] == first[:3]  # then it stops reading
    leaving.close()
    assert [m["event"]["memory_id"] for m in ws_take(staying, 20)] == first
    more = store(api.mem, "after the other left")
    assert [m["event"]["memory_id"] for m in ws_take(staying, 1)] == more
    deadline = time.monotonic() + 5
    while hub.watchers() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.watchers() == 1  # the one that left holds nothing
    staying.close()
    while hub.watchers() and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    assert hub.watchers() == 0


def test_writes_by_another_process_reach_the_stream(serve: Callable[..., Api], open_memory: Open) -> None:
    api = serve()
    other = open_memory(agent="elsewhere")  # the same database, opened apart (as another process would)
    stream = api.sse()
    ids = [x.id for x in other.store_many(["from elsewhere", "and again"], namespace="ops")]
    got = stream.take(2)
    assert [e["data"]["memory_id"] for e in got] == ids and got[0]["data"]["agent"] == "elsewhere"
    stream.close()


def test_a_revoked_key_ends_the_stream(serve: Callable[..., Api]) -> None:
    api = serve(Settings(grants_refresh_seconds=0.3, server_poll_seconds=0.1))
    stream = api.sse()
    store(api.mem, "seen")
    assert len(stream.take(1)) == 1
    api.mem.security.revoke_api_key(api.key.split("_")[1])
    end = stream.take(1)[0]
    assert end["event"] == "error" and end["data"]["status"] == 401
    stream.close()


def test_other_replicas_changes_appear_with_sync(
    serve: Callable[..., Api], open_memory: Open, redis_server: Redis, tmp_path: Path
) -> None:
    url = redis_server.url(6)
    redis_lib.Redis.from_url(url).flushdb()
    sync = {"sync_url": url, "sync_namespaces": ["ops"], "stats_flush_seconds": 0.1}
    api = serve(Settings(sync_background=True, server_poll_seconds=0.1, **sync))
    other = open_memory(tmp_path / "replica-b.db", agent="bee", settings=Settings(**sync))
    stream = api.sse()
    mine = store(api.mem, "written here")
    theirs = [x.id for x in other.store_many(["written on replica b"], namespace="ops")]
    other.sync.publish_all()
    got = stream.take(2)
    assert [e["data"]["memory_id"] for e in got] == [*mine, *theirs]
    assert got[1]["data"]["agent"] == "bee" and got[1]["id"] > got[0]["id"]  # this database's seq
    with httpx.Client(base_url=api.url, headers={"X-API-Key": api.key}) as c:
        status = c.get("/v1/namespaces/ops/sync").json()
        assert status["configured"] is True and status["status"]["connected"] is True
    stream.close()
