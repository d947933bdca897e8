"""Plain data objects that cross the public API."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


class Zone(enum.StrEnum):
    """Orbits of the memory's solar system, closest (most alive) first."""

    CORE = "core"
    INNER = "inner"
    OUTER = "outer"
    BELT = "belt"
    CLOUD = "cloud"

    @property
    def rank(self) -> int:
        """0 for Core ... 4 for Cloud: a larger rank is further out."""
        return list(Zone).index(self)


def to_datetime(ts: float | None) -> datetime | None:
    """Epoch seconds (as stored) to an aware UTC datetime."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class Principal:
    """Who acts: an agent id (or API key name). Roles are granted per namespace."""

    id: str

    def __post_init__(self) -> None:
        if not self.id or not self.id.strip():
            raise ValueError("a principal needs a non-empty id")


Who = Principal | str | None  # who acts in a call: a principal, an agent id, or None (the default)


@dataclass(frozen=True)
class Source:
    """Where a memory came from: ingestion connectors fill this in."""

    type: str
    url: str | None = None
    chunk: int | None = None
    ingested_at: float | None = None


@dataclass(frozen=True)
class Memory:
    """One stored memory. Times are seconds since the epoch (UTC), as stored."""

    id: str
    namespace: str
    content: str
    content_hash: str
    importance: float
    pinned: bool
    recall_count: int
    created_at: float
    updated_at: float
    last_recalled_at: float | None
    last_access_at: float
    zone: Zone
    score: float
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Source | None = None
    thread: str | None = None
    position: int | None = None
    encrypted: bool = False
    key_id: str | None = None
    origin_agent: str = "local"
    hlc: str = ""
    vector_clock: dict[str, int] = field(default_factory=dict)
    deleted_at: float | None = None

    @property
    def forgotten(self) -> bool:
        """True for a tombstone: forgotten, kept only until purged so sync can spread the delete."""
        return self.deleted_at is not None

    @property
    def origin(self) -> str:
        """Where it came from, for people: a page's title or URL, a file's name, an API item,
        with the chunk ("runbook.md #3"); else its thread and position; else "" (stored as is)."""
        src, meta = self.source, self.metadata
        chunk = f" #{src.chunk}" if src is not None and src.chunk is not None else ""
        if src is not None:
            if src.type == "file":
                name = meta.get("file_name") or (src.url or "").rsplit("/", 1)[-1]
            elif src.type == "web":
                name = meta.get("title") or src.url
            elif src.type == "summary":  # of a file, a page, a thread: named as they are
                of = src.url or ""
                name = "summary of " + (of.rsplit("/", 1)[-1] if of.startswith("/") else of)
            else:
                name = src.url or src.type
            return f"{name or src.type}{chunk}"
        if self.thread is not None:
            return self.thread if self.position is None else f"{self.thread} #{self.position}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by export and the CLI)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["zone"] = self.zone.value
        out["tags"] = list(self.tags)
        out["source"] = None if self.source is None else vars(self.source).copy()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Memory:
        """Inverse of ``to_dict``."""
        data = dict(data)
        data["zone"] = Zone(data["zone"])
        tags = data.get("tags") or ()
        data["tags"] = tuple(tags) if isinstance(tags, list | tuple) else tags  # checked later
        src = data.get("source")
        data["source"] = Source(**src) if src else None
        return cls(**data)


@dataclass(frozen=True)
class RecallHit:
    """A recalled memory with its relevance to the query (higher is better)."""

    memory: Memory
    relevance: float
    via: tuple[str, ...]  # which arms found it: "lexical", "vector", "thread", "graph"


@dataclass(frozen=True)
class Link:
    """A typed, weighted, directed edge between two memories of one namespace."""

    source_id: str
    target_id: str
    kind: str
    weight: float
    created_at: float


class Op(enum.StrEnum):
    """What a change did to a memory."""

    STORE = "store"
    IMPORT = "import"
    UPDATE = "update"
    FORGET = "forget"
    LINK = "link"  # the memory gained (or re-weighted) an outgoing link; payload: the link
    PURGE = "purge"  # a tombstone's row was deleted for good
    RECALL = "recall"  # (sync) a replica's recall count of the memory; payload: replica, count, at


@dataclass(frozen=True)
class ChangeEvent:
    """One entry of the change log: who changed which memory how, in the order it happened.

    ``seq`` is its place in this database's log (a later change has a larger seq; 0 for an
    event not written yet). ``payload``: the stored memory for store and import, the fields
    that changed for update, the link for link, why for forget; ``{"scrubbed": True}`` once
    the memory is purged."""

    seq: int
    namespace: str
    memory_id: str
    op: Op
    agent: str
    hlc: str
    created_at: float
    payload: dict[str, Any] = field(default_factory=dict)
    vector_clock: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReorbitReport:
    """What one reorbit pass did in one namespace."""

    namespace: str
    scored: int
    moved_inward: int
    moved_outward: int
    forgotten: int
    purged: int
    zones: dict[Zone, int]
    seconds: float


@dataclass(frozen=True)
class ForgetReport:
    """What one forgetting pass did in one namespace."""

    namespace: str
    forgotten: int  # idle Cloud memories turned into tombstones
    purged: int  # tombstones older than purge_after_days deleted for good
    seconds: float


@dataclass(frozen=True)
class Stats:
    """Counts for one namespace."""

    namespace: str
    memories: int
    forgotten: int
    links: int
    threads: int
    zones: dict[Zone, int]
    mean_score: float


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    namespace: str
    imported: int
    skipped: int
    links: int


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion run did over its sources (files, web pages, API items).

    ``unchanged`` sources had the same content hash as when last ingested: nothing was
    written for them. ``replaced`` counts the memories of changed or vanished sources that
    were forgotten; ``removed`` the sources that vanished (a deleted file). ``skipped``
    sources could not be ingested, with the reason; nothing stored before was touched.
    """

    sources: int = 0
    chunks: int = 0
    new: int = 0
    unchanged: int = 0
    replaced: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            self.sources + other.sources,
            self.chunks + other.chunks,
            self.new + other.new,
            self.unchanged + other.unchanged,
            self.replaced + other.replaced,
            self.removed + other.removed,
            [*self.skipped, *other.skipped],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the same in a flow result, a log line or a test."""
        out = asdict(self)
        out["skipped"] = [{"source": src, "reason": why} for src, why in self.skipped]
        return out


@dataclass(frozen=True)
class Conflict:
    """Two concurrent edits of a memory (neither agent had seen the other's): the merge kept
    ``winner`` (the later by hybrid logical clock, then agent id); ``loser`` is kept here until
    someone resolves it. Each version: ``values`` of ``fields``, ``stamp`` ("<hlc> <agent>"),
    ``vector_clock``."""

    id: int
    namespace: str
    memory_id: str
    fields: tuple[str, ...]
    winner: dict[str, Any]
    loser: dict[str, Any]
    detected_at: float
    resolved_at: float | None = None
    resolution: str | None = None


@dataclass(frozen=True)
class SyncStatus:
    """How far one replica is with one namespace (``memory_sync_status``).

    ``unpublished``: this database's changes not yet on the stream; ``last_published_at`` /
    ``last_applied_at``: when the newest change it published / applied from another replica
    was made (epoch seconds); ``lag_events``: stream entries this replica has not applied yet
    (not read plus read but not acknowledged); ``lag_ms``: how far behind the stream's newest
    entry its last applied one is; ``pending``: entries read but not acknowledged;
    ``consumers``: of this replica's group, those seen within the claim time; ``held``: events
    waiting for their memory or refused (kept for inspection); ``conflicts``: open ones.
    ``needs_bootstrap``: the stream was trimmed past what this replica applied."""

    namespace: str
    replica: str
    unpublished: int
    last_published_at: float | None
    last_applied_at: float | None
    stream_length: int
    lag_events: int
    lag_ms: float | None
    pending: int
    consumers: int
    held: int
    conflicts: int
    needs_bootstrap: bool
    connected: bool
