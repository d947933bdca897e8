"""The live event stream of a namespace: Server-Sent Events (``GET .../events/stream``) and a
WebSocket (``.../events/ws``), fed from this database's change log (decision 0032).

An event's id is its ``seq`` in the change log: a client resumes after the last id it saw
(SSE: the ``Last-Event-ID`` header its EventSource sends on reconnecting, or ``?after=``;
WebSocket: ``?after=``) and gets every later event once, in order. Without ``after`` a stream
starts at the newest event (live only); ``after=0`` replays the whole log.

Each connection reads the log through ``mem.events(oldest_first=True)`` as its principal
(access check ``events``, audited), at most ``server_stream_batch`` events at a time, sent
before it reads more: a slow client holds one batch and slows only itself. It reads when the
``Hub`` wakes it: at once after a write committed in this process (``engine.on_commit``);
after a change reached the namespace's sync channel (with ``STELLAR_SYNC_URL``: another
replica published, and this one, syncing, applies it and wakes the stream again); and, for
writes by other processes on this database, when a shared poll every
``server_poll_seconds`` sees the log's newest seq grow. Idle SSE streams get a keep-alive
comment every ``server_heartbeat_seconds``; the API key is checked again every
``grants_refresh_seconds`` at most, and a stream whose key was revoked ends.

Known limit (decision 0032): on PostgreSQL, concurrent writers in one namespace can commit out
of seq order, and a live follower past the later seq would skip the earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from stellar_core.errors import StellarError
from stellar_core.memory import StellarMemory
from stellar_core.models import ChangeEvent, Principal
from stellar_core.server import problems, shapes
from stellar_core.server.access import Caller, Keys, presented
from stellar_core.store import changelog
from stellar_core.sync.streams import Streams

log = logging.getLogger(__name__)
FIRST_MESSAGE_SECONDS = 10.0  # a WebSocket without a key in its handshake sends one within this
RETRY_MS = 2000  # what an EventSource waits before reconnecting


class Hub:
    """Wakes the stream connections of a namespace when its change log may have grown."""

    def __init__(self, mem: StellarMemory) -> None:
        self.mem = mem
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._newest: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unhook: Callable[[], None] = _nothing
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._unhook = self.mem.engine.on_commit(self._committed)
        self._tasks = [asyncio.create_task(self._poll(), name="stellar-stream-poll")]
        if self.mem.sync.configured:
            self._listener = threading.Thread(target=self._listen, name="stellar-stream-wake", daemon=True)
            self._listener.start()

    async def stop(self) -> None:
        self._unhook()
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._listener is not None:
            await run_in_threadpool(self._listener.join, 5.0)
            self._listener = None

    @contextlib.contextmanager
    def watching(self, namespace: str) -> Iterator[asyncio.Event]:
        """An event set whenever the namespace's log may have grown (while in the block)."""
        woken = asyncio.Event()
        self._waiting.setdefault(namespace, set()).add(woken)
        try:
            yield woken
        finally:
            waiting = self._waiting.get(namespace, set())
            waiting.discard(woken)
            if not waiting:
                self._waiting.pop(namespace, None)

    def watchers(self) -> int:
        return sum(len(v) for v in self._waiting.values())

    def wake(self, namespace: str) -> None:
        for woken in self._waiting.get(namespace, ()):
            woken.set()

    def _committed(self, namespace: str) -> None:  # in the writer's thread
        loop = self._loop
        if loop is not None and namespace in self._waiting:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake, namespace)

    async def _poll(self) -> None:
        """Writes by other processes: one look at the newest seq per watched namespace."""
        every = self.mem.settings.server_poll_seconds
        while True:
            await asyncio.sleep(every)
            names = list(self._waiting)
            if not names:
                continue
            try:
                newest = await run_in_threadpool(self._newest_seqs, names)
            except Exception as exc:  # the database hiccuped: next time
                log.warning("event stream poll: %s", exc)
                continue
            for ns, seq in newest.items():
                if seq != self._newest.get(ns):
                    self._newest[ns] = seq
                    self.wake(ns)

    def _newest_seqs(self, names: list[str]) -> dict[str, int]:
        with self.mem.engine.snapshot() as conn:  # wakes only: what is read is the readers' own call
            return {ns: changelog.last_seq(conn, ns) for ns in names}

    def _listen(self) -> None:
        """With sync: the namespaces' wake channel (every replica's publishing) wakes them."""
        s = self.mem.settings
        assert s.sync_url is not None
        streams = Streams(s.sync_url, s.sync_prefix)
        start = len(streams.channel(""))
        while not self._stop.is_set():
            try:
                pubsub: Any = streams.r.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(streams.channel("*"))
                try:
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=1.0)
                        if message and self._loop is not None:
                            channel = message["channel"]
                            ns = (channel.decode() if isinstance(channel, bytes) else str(channel))[start:]
                            self._committed(ns)
                finally:
                    pubsub.close()
            except Exception as exc:  # Redis gone: polling still works; try again
                log.warning("event stream: the sync wake channel does not answer: %s", exc)
                self._stop.wait(1.0)
        streams.close()


def _nothing() -> None:
    pass


async def follow(
    mem: StellarMemory, hub: Hub, keys: Keys, key: str, ns: str, who: Principal, after: int
) -> AsyncIterator[list[ChangeEvent] | None]:
    """Batches of the namespace's events after ``after``, in order, as they come; ``None``
    when a keep-alive is due. Ends by raising ``Unauthorized`` if the key stops working, or
    ``PermissionDenied`` if the principal may no longer read the events."""
    s = mem.settings
    recheck = min(s.grants_refresh_seconds, s.server_heartbeat_seconds)
    quiet_since = time.monotonic()
    with hub.watching(ns) as woken:
        while True:
            woken.clear()
            if keys.cached(key) is None:
                who = await run_in_threadpool(keys.principal, key)
            found = await run_in_threadpool(
                mem.events, after=after, limit=s.server_stream_batch, oldest_first=True,
                namespace=ns, principal=who,
            )  # fmt: skip
            if found:
                after = found[-1].seq
                quiet_since = time.monotonic()
                yield found
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), recheck)
            if time.monotonic() - quiet_since >= s.server_heartbeat_seconds:
                quiet_since = time.monotonic()
                yield None


def start_after(mem: StellarMemory, ns: str, who: Principal, after: int | None) -> int:
    """Where a stream starts: after ``after``, or (none given) after the newest event now.
    Raises ``PermissionDenied`` before anything is streamed if the principal may not read."""
    newest = mem.events(limit=1, namespace=ns, principal=who)
    return after if after is not None else (newest[0].seq if newest else 0)


def sse(e: ChangeEvent) -> str:
    return f"id: {e.seq}\ndata: {json.dumps(shapes.event(e), default=str)}\n\n"


def routes(mem: StellarMemory, hub: Hub) -> APIRouter:
    r = APIRouter(tags=["events"])
    base = "/v1/namespaces/{ns}/events"

    @r.get(base + "/stream", summary="Live events (Server-Sent Events)", response_class=StreamingResponse,
           responses={200: {"content": {"text/event-stream": {}}}})  # fmt: skip
    async def stream(
        request: Request,
        ns: str,
        who: Caller,
        after: Annotated[
            int | None, Query(ge=0, description="Events after this seq (0: all; none: from now).")
        ] = None,
        last_event_id: Annotated[
            int | None, Header(ge=0, description="Sent by EventSource on reconnect; wins over `after`.")
        ] = None,
        api_key: Annotated[
            str | None, Query(description="For browsers' EventSource (no headers); prefer a header.")
        ] = None,
    ) -> StreamingResponse:
        """Each event: `id: <seq>` and `data: <the event as JSON>`; idle: `: keep-alive` comments."""
        keys: Keys = request.app.state.keys
        key = presented(request, query=True)
        assert key is not None  # Caller checked it
        begin = await run_in_threadpool(
            start_after, mem, ns, who, last_event_id if last_event_id is not None else after
        )

        async def lines() -> AsyncIterator[str]:
            yield f"retry: {RETRY_MS}\n\n"
            try:
                async for batch in follow(mem, hub, keys, key, ns, who, begin):
                    yield "".join(sse(e) for e in batch) if batch else ": keep-alive\n\n"
            except (StellarError, problems.Unauthorized) as exc:  # revoked meanwhile: say so, end
                status = 401 if isinstance(exc, problems.Unauthorized) else 403
                detail = exc.detail if isinstance(exc, problems.Unauthorized) else str(exc)
                said = json.dumps(problems.body(status, str(detail), request.url.path))
                yield f"event: error\ndata: {said}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(lines(), media_type="text/event-stream", headers=headers)

    @r.websocket(base + "/ws")
    async def socket(websocket: WebSocket, ns: str, after: Annotated[int | None, Query(ge=0)] = None) -> None:
        """Messages `{"id": seq, "event": {...}}`. The API key: a header, `?api_key=`, or (browsers)
        a first message `{"api_key": "stk_..."}` within 10 s."""
        keys: Keys = websocket.app.state.keys
        try:
            key = presented(websocket, query=True)
            if key is not None:
                who = await run_in_threadpool(keys.principal, key)
                begin = await run_in_threadpool(start_after, mem, ns, who, after)
        except (StellarError, problems.Unauthorized) as exc:
            await _deny(websocket, exc)
            return
        await websocket.accept()
        if key is None:
            try:
                first = await asyncio.wait_for(websocket.receive_json(), FIRST_MESSAGE_SECONDS)
                key = str(first["api_key"]) if isinstance(first, dict) and "api_key" in first else ""
                who = await run_in_threadpool(keys.principal, key)
                begin = await run_in_threadpool(start_after, mem, ns, who, after)
            except (StellarError, problems.Unauthorized, TimeoutError, ValueError, KeyError) as exc:
                await _close(websocket, exc)
                return
            except WebSocketDisconnect:
                return
        await _pump(websocket, follow(mem, hub, keys, key, ns, who, begin))

    return r


async def _pump(websocket: WebSocket, events: AsyncIterator[list[ChangeEvent] | None]) -> None:
    """Send the events until the client leaves (noticed at once, by a reader beside) or the
    key stops working."""

    async def send() -> None:
        try:
            async for batch in events:
                for e in batch or ():
                    await websocket.send_text(
                        json.dumps({"id": e.seq, "event": shapes.event(e)}, default=str)
                    )
        except (StellarError, problems.Unauthorized) as exc:
            await _close(websocket, exc)

    async def receive() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                await t
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            if websocket.application_state != WebSocketState.DISCONNECTED:
                await websocket.close()


def _status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, problems.Unauthorized):
        return 401, str(exc.detail)
    if isinstance(exc, StellarError):
        return problems.of_error(exc, "").status_code, str(exc)
    return 401, 'send the API key first: {"api_key": "stk_..."}'


async def _deny(websocket: WebSocket, exc: BaseException) -> None:
    """Refuse the handshake with a problem (or, where the server cannot, a policy close)."""
    status, detail = _status(exc)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(problems.problem(status, detail, websocket.url.path))
    else:
        await websocket.close(1008, detail[:120])


async def _close(websocket: WebSocket, exc: BaseException) -> None:
    """End an accepted socket: 4401 (key), 4403 (refused), 1008 (anything else); the reason says why."""
    status, detail = _status(exc)
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(4000 + status if status in (401, 403) else 1008, detail[:120])
