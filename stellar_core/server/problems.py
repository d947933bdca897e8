"""Errors as RFC 9457 problem details (``application/problem+json``), and the request-size
limit. Every error the HTTP API answers is one of these; none carries a stack trace.

    NotFoundError -> 404            PermissionDenied (from a verb) -> 403
    ValidationError, SourceError,   an API key missing, unknown, expired or revoked -> 401
      invalid request data -> 422   malformed JSON -> 400
    TransientError (SyncUnavailable, SourceUnavailable, EmbeddingError), StorageError
      -> 503 with Retry-After       a body over ``server_max_body_bytes`` -> 413
    an unknown route -> 404, a method it does not take -> 405, anything else -> 500
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stellar_core.errors import (
    ConfigurationError,
    EncryptionError,
    NotFoundError,
    PermissionDenied,
    SourceError,
    StellarError,
    StorageError,
    SyncError,
    TransientError,
    ValidationError,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER = "5"  # seconds, on a 503

# (error class, status, type slug); the first that matches wins, so subclasses come first
KINDS: list[tuple[type[StellarError], int, str]] = [
    (NotFoundError, 404, "not-found"),
    (PermissionDenied, 403, "forbidden"),
    (ValidationError, 422, "invalid"),
    (SourceError, 422, "source-refused"),
    (SyncError, 409, "sync"),
    (EncryptionError, 500, "encryption"),
    (ConfigurationError, 500, "configuration"),
    (StorageError, 503, "storage-unavailable"),
    (TransientError, 503, "unavailable"),
]


def body(status: int, detail: str, instance: str, type_: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        # RFC 9457: about:blank when the status says it all
        "type": f"urn:stellar:problem:{type_}" if type_ else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem(
    status: int,
    detail: str,
    instance: str,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem details response."""
    if status == 503:
        headers = {"Retry-After": RETRY_AFTER, **(headers or {})}
    return JSONResponse(
        body(status, detail, instance, type_, **extra), status, headers, media_type=MEDIA_TYPE
    )


def of_error(exc: StellarError, instance: str) -> JSONResponse:
    """The problem an engine error is."""
    for cls, status, slug in KINDS:
        if isinstance(exc, cls):
            detail = str(exc) if status < 500 or status == 503 else f"{slug} error: see the server's log"
            if status >= 500:
                log.warning("%s on %s: %s", type(exc).__name__, instance, exc)
            return problem(status, detail, instance, slug)
    return problem(400, str(exc), instance, "refused")


class Unauthorized(HTTPException):
    """No API key, or one that is unknown, expired or revoked."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="stellar"'})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def install(app: FastAPI) -> None:
    """Answer every error as a problem."""

    async def stellar(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StellarError)
        return of_error(exc, request.url.path)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        return problem(exc.status_code, detail, request.url.path, headers=dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]  # fmt: skip
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(400, "the body is not valid JSON", request.url.path, "malformed-json")
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem(422, detail or "invalid request", request.url.path, "invalid", errors=errors)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "an unexpected error: see the server's log", request.url.path)

    app.add_exception_handler(StellarError, stellar)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413 before they are parsed: at once by
    their Content-Length, or (chunked, no Content-Length) as soon as the bytes received pass
    the limit. Holds nothing: it counts."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:  # read outside a route (FastAPI answers those inside)
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        data = json.dumps(body(413, f"the request body is larger than {self.limit} bytes",
                               scope.get("path", ""), "too-large")).encode()  # fmt: skip
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(data)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": data})
