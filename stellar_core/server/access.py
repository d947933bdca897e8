"""Who a request acts as: its API key (``Authorization: Bearer stk_...`` or ``X-API-Key``),
resolved by ``mem.security.authenticate`` and trusted for a few seconds (keyed by the key's
hash; never longer than ``grants_refresh_seconds``, so a revoked key stops working within
that). Every verb is then called with ``principal=``: the engine's access control and audit
apply as they do in process."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from stellar_core.errors import StellarError
from stellar_core.memory import StellarMemory
from stellar_core.models import Principal
from stellar_core.server.problems import Unauthorized

CACHED = 10_000  # keys remembered at most


class Keys:
    """API keys checked, each remembered briefly (see the module docstring)."""

    def __init__(self, mem: StellarMemory) -> None:
        s = mem.settings
        self.mem = mem
        self.ttl = min(s.server_auth_cache_seconds, s.grants_refresh_seconds)
        self._known: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> Principal | None:
        """The key's principal if it was checked less than ``ttl`` ago (no database read)."""
        found = self._known.get(_digest(key))
        return found[0] if found is not None and found[1] > time.monotonic() else None

    def principal(self, key: str) -> Principal:
        """Who the key acts as; ``Unauthorized`` if it is unknown, expired or revoked (blocking:
        call it in a worker thread)."""
        who = self.cached(key)
        if who is not None:
            return who
        try:
            who = self.mem.security.authenticate(key)
        except StellarError as exc:
            raise Unauthorized(f"the API key is not valid: {exc}") from None
        with self._lock:
            if len(self._known) >= CACHED:
                now = time.monotonic()
                self._known = {k: v for k, v in self._known.items() if v[1] > now}
                if len(self._known) >= CACHED:
                    self._known.clear()
            self._known[_digest(key)] = (who, time.monotonic() + self.ttl)
        return who


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented(conn: HTTPConnection, query: bool = False) -> str | None:
    """The key a request or WebSocket handshake carries (``query``: also ``?api_key=``, for
    browsers' EventSource and WebSocket, which cannot set headers)."""
    auth = conn.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <API key>'")
        return token.strip()
    key = conn.headers.get("x-api-key") or (conn.query_params.get("api_key") if query else None)
    return key.strip() if key else None


# Declared for the OpenAPI schema (/docs shows both ways in); checked below.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer stk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: stk_...`")


async def authenticated(
    request: Request,
    _b: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _h: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The principal of the request's API key: from the cache on the event loop (no thread
    hop on the hot path), else asked of the database in a worker thread."""
    key = presented(request, query=request.url.path.endswith("/events/stream"))
    if key is None:
        raise Unauthorized("an API key is required: 'Authorization: Bearer stk_...' or 'X-API-Key'")
    keys: Keys = request.app.state.keys
    who = keys.cached(key)
    return who if who is not None else await run_in_threadpool(keys.principal, key)


Caller = Annotated[Principal, Depends(authenticated)]
