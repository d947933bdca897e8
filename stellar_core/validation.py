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


def source(value: Any) -> Source | None:
    if value is None or isinstance(value, Source):
        return value
    if isinstance(value, Mapping):
        try:
            return Source(**value)
        except TypeError as exc:
            raise ValidationError(f"invalid source {dict(value)!r}: {exc}") from exc
    raise ValidationError("source must be a Source or a mapping with type, url, chunk, ingested_at")


def thread(value: Any, position: Any) -> tuple[str | None, int | None]:
    if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 256):
        raise ValidationError(f"invalid thread {value!r}: 1-256 characters")
    if position is not None:
        if value is None:
            raise ValidationError("a position needs a thread")
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValidationError(f"position must be a whole number >= 0, not {position!r}")
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


def zones(value: Any) -> tuple[Zone, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str | Zone) else list(value)
    try:
        return tuple(Zone(z) for z in items)
    except ValueError as exc:
        raise ValidationError(
            f"unknown zone in {items!r}; zones: {[z.value for z in Zone]}"
        ) from exc


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


def positive_int(value: Any, name: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValidationError(f"{name} must be a whole number in 1..{most}, not {value!r}")
    return value
