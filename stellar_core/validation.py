"""Checking what callers hand to the API, before anything is written."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stellar_core.errors import ValidationError
from stellar_core.models import Principal, Source, Zone

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_DRAFT_KEYS = {
    "content",
    "importance",
    "pinned",
    "tags",
    "metadata",
    "source",
    "thread",
    "position",
}


@dataclass(frozen=True)
class Draft:
    """A memory to store, checked."""

    content: str
    content_hash: str
    importance: float
    pinned: bool
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    source: Source | None
    thread: str | None
    position: int | None


def namespace(value: Any) -> str:
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise ValidationError(
            f"invalid namespace {value!r}: 1-128 characters of letters, digits and ._:@/- "
            "starting with a letter or digit"
        )
    return value


def principal(value: Any, default: Principal) -> Principal:
    if value is None:
        return default
    if isinstance(value, Principal):
        return value
    if isinstance(value, str) and value.strip():
        return Principal(value)
    raise ValidationError(f"invalid principal {value!r}: give a Principal or a non-empty agent id")


def content(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"content must be text, not {type(value).__name__}")
    if not value.strip():
        raise ValidationError("content is empty")
    if len(value) > limit:
        raise ValidationError(
            f"content has {len(value):,} characters; the limit is {limit:,} (max_content_chars)"
        )
    if "\x00" in value:
        raise ValidationError("content contains NUL characters (binary data?)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"content is not valid Unicode text: {exc.reason}") from exc
    return value


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValidationError(f"importance must be a number in 0..1, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValidationError(f"importance {value} is outside 0..1")
    return float(value)


def weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ValidationError(f"link weight must be in (0, 1], not {value!r}")
    return float(value)


def tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError("tags must be a list of strings")
    out = []
    for tag in value:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 128:
            raise ValidationError(f"invalid tag {tag!r}: 1-128 characters")
        out.append(tag.strip())
    return tuple(sorted(set(out)))


def metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("metadata must be a mapping")
    try:
        return dict(json.loads(json.dumps(dict(value))))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata must be JSON-serialisable: {exc}") from exc


MAX_SOURCE_URL = 2_000  # indexed: a PostgreSQL index entry holds at most ~2,700 bytes


def source(value: Any) -> Source | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            value = Source(**value)
        except TypeError as exc:
            raise ValidationError(f"invalid source {dict(value)!r}: {exc}") from exc
    if not isinstance(value, Source):
        raise ValidationError("source must be a Source or a mapping with type, url, chunk, ingested_at")
    if not isinstance(value.type, str) or not 0 < len(value.type.strip()) <= 32:
        raise ValidationError(f"source type must be 1-32 characters, not {value.type!r}")
    if value.url is not None and (not isinstance(value.url, str) or len(value.url) > MAX_SOURCE_URL):
        raise ValidationError(f"source url must be text of at most {MAX_SOURCE_URL} characters")
    if value.chunk is not None and (
        isinstance(value.chunk, bool) or not isinstance(value.chunk, int) or value.chunk < 0
    ):
        raise ValidationError(f"source chunk must be a whole number >= 0, not {value.chunk!r}")
    if value.ingested_at is not None:
        timestamp(value.ingested_at)
    return value


def thread(value: Any, position: Any) -> tuple[str | None, int | None]:
    if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 256):
        raise ValidationError(f"invalid thread {value!r}: 1-256 characters")
    if position is not None:
        if value is None:
            raise ValidationError("a position needs a thread")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < 2**31:
            raise ValidationError(f"position must be a whole number in 0..2**31-1, not {position!r}")
    return value, position


def draft(item: Any, limit: int) -> Draft:
    """A ``Draft`` from a string or a mapping of store() keyword arguments."""
    if isinstance(item, str):
        item = {"content": item}
    if not isinstance(item, Mapping):
        raise ValidationError(f"cannot store {type(item).__name__}; give text or a mapping")
    unknown = set(item) - _DRAFT_KEYS
    if unknown:
        raise ValidationError(f"unknown fields {sorted(unknown)}; known: {sorted(_DRAFT_KEYS)}")
    text = content(item.get("content"), limit)
    th, pos = thread(item.get("thread"), item.get("position"))
    pinned = item.get("pinned", False)
    if not isinstance(pinned, bool):
        raise ValidationError("pinned must be true or false")
    return Draft(
        content=text,
        content_hash=content_hash(text),
        importance=importance(item.get("importance", 0.5)),
        pinned=pinned,
        tags=tags(item.get("tags")),
        metadata=metadata(item.get("metadata")),
        source=source(item.get("source")),
        thread=th,
        position=pos,
    )


def items(value: Any) -> list[Any]:
    """A batch for store_many: an iterable of texts or mappings (not a single one)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValidationError("store_many takes a list of texts or mappings")
    return list(value)


def record(x: Any, limit: int) -> None:
    """Check a complete memory (from an import) field by field."""
    content(x.content, limit)
    importance(x.importance)
    tags(x.tags)
    metadata(x.metadata)
    source(x.source)
    thread(x.thread, x.position)
    for name in ("created_at", "updated_at", "last_access_at", "score"):
        if isinstance(getattr(x, name), bool) or not isinstance(getattr(x, name), int | float):
            raise ValidationError(f"{name} must be a number, not {getattr(x, name)!r}")
    for name in ("last_recalled_at", "deleted_at"):
        timestamp(getattr(x, name))
    if isinstance(x.recall_count, bool) or not isinstance(x.recall_count, int) or x.recall_count < 0:
        raise ValidationError(f"recall_count must be a whole number >= 0, not {x.recall_count!r}")
    if not isinstance(x.id, str) or not 0 < len(x.id) <= 36:
        raise ValidationError(f"invalid memory id {x.id!r}")
    if not isinstance(x.vector_clock, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in x.vector_clock.items()
    ):
        raise ValidationError("vector_clock must map agent ids to counters")
    if not isinstance(x.origin_agent, str) or not isinstance(x.hlc, str):
        raise ValidationError("origin_agent and hlc must be text")


def link_record(x: Any) -> None:
    """Check a link from an import."""
    for name in ("source_id", "target_id"):
        if not isinstance(getattr(x, name), str):
            raise ValidationError(f"link {name} must be a memory id")
    if not isinstance(x.kind, str) or not 0 < len(x.kind.strip()) <= 64:
        raise ValidationError(f"invalid link kind {x.kind!r}: 1-64 characters")
    weight(x.weight)
    if timestamp(x.created_at) is None:
        raise ValidationError("link created_at is missing")


def zones(value: Any) -> tuple[Zone, ...]:
    if value is None:
        return ()
    try:
        items = [value] if isinstance(value, str | Zone) else list(value)
        return tuple(Zone(z) for z in items)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"unknown zone in {value!r}; zones: {[z.value for z in Zone]}") from exc


def timestamp(value: Any) -> float | None:
    """A datetime or epoch seconds as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationError("give time-zone aware datetimes (e.g. datetime.now(UTC))")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValidationError(f"invalid time {value!r}")


def int_in_range(value: Any, name: str, most: int, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValidationError(f"{name} must be a whole number in {least}..{most}, not {value!r}")
    return value
