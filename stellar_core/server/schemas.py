"""The HTTP API's request bodies (pydantic): bounds and descriptions, so that the OpenAPI
schema at ``/docs`` says what each field takes. The engine checks every value again."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ZoneName = Literal["core", "inner", "outer", "belt", "cloud"]
Direction = Literal["out", "in", "both"]
MAX_BATCH = 1000  # memories per batch store
PAGE = 1000  # most memories or events per page


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreRequest(Body):
    """One memory to store; storing identical content again (same thread) returns the existing one."""

    content: str = Field(min_length=1, description="The memory's text.")
    importance: float = Field(0.5, ge=0, le=1, description="Given by the caller; never overwritten.")
    pinned: bool = Field(False, description="A pinned memory is never forgotten.")
    tags: list[str] = Field(
        default_factory=list, max_length=64, description="Tags (recall can require them)."
    )
    metadata: dict[str, Any] | None = Field(None, description="Any JSON object, kept as given.")
    source: dict[str, Any] | None = Field(
        None, description='Where it came from: {"type": ..., "url": ..., "chunk": ..., "ingested_at": ...}.'
    )
    thread: str | None = Field(
        None, min_length=1, max_length=256, description="The conversation, session or document it belongs to."
    )
    position: int | None = Field(None, ge=0, description="Its place in the thread (default: after the last).")
    encrypted: bool = Field(False, description="Keep its content encrypted at rest (AES-256-GCM).")


class StoreBatch(Body):
    """Memories stored in one transaction."""

    items: list[StoreRequest] = Field(
        min_length=1, max_length=MAX_BATCH, description="The memories, in order."
    )


class UpdateRequest(Body):
    """The fields to change; those left out stay as they are."""

    content: str | None = Field(None, min_length=1, description="New text (re-embedded).")
    importance: float | None = Field(None, ge=0, le=1)
    pinned: bool | None = None
    tags: list[str] | None = Field(None, max_length=64, description="Replaces the tags.")
    metadata: dict[str, Any] | None = Field(None, description="Replaces the metadata.")


class RecallRequest(Body):
    """A recall: the ``k`` memories most relevant to ``query``, best first."""

    query: str = Field(min_length=1, description="What to recall, in words.")
    k: int = Field(10, ge=1, le=1000, description="How many memories.")
    zones: list[ZoneName] | None = Field(None, description="Only memories in these zones.")
    tags: list[str] | None = Field(
        None, max_length=64, description="Only memories with every one of these tags."
    )
    since: datetime | float | None = Field(
        None, description="Created at or after (ISO 8601 with zone, or epoch s)."
    )
    until: datetime | float | None = Field(
        None, description="Created before (ISO 8601 with zone, or epoch s)."
    )
    source_type: str | None = Field(None, max_length=64, description="Only memories from this source type.")
    expand: bool = Field(False, description="Add linked memories of the hits, scored below them.")
    count: bool = Field(True, description="Count this as a use (false: a look that leaves statistics alone).")


class LinkRequest(Body):
    """A directed, typed, weighted edge; linking a pair again with that kind sets the weight."""

    source_id: str = Field(min_length=1, max_length=64, description="The memory the edge leaves.")
    target_id: str = Field(min_length=1, max_length=64, description="The memory the edge reaches.")
    kind: str = Field("related", min_length=1, max_length=64, description="What the edge means.")
    weight: float = Field(1.0, ge=0, le=1_000_000, description="Its strength.")


class IngestUrlRequest(Body):
    """A web page to fetch and store (chunked); fetching again replaces a changed page's chunks.
    Private, loopback and link-local addresses are refused unless the server allows them
    (``STELLAR_WEB_ALLOW_HOSTS``)."""

    url: str = Field(min_length=1, max_length=2048, description="An http(s) URL.")
    importance: float = Field(0.5, ge=0, le=1, description="Importance of each chunk stored.")
