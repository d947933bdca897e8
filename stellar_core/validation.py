"""Checking what callers hand to the API, before anything is written.

One layer for both databases: a value is accepted only if SQLite and PostgreSQL both store it
as given, so an export of either imports into the other. That means the strictest of the
two: text without NUL characters or lone surrogates and within its column's length, finite
numbers, whole numbers within 32 bits where the column is ``integer``, JSON without NaN, and
metadata nested at most ``MAX_DEPTH`` levels. Every refusal is a ``ValidationError`` whose
message shows at most the start of the value.
"""

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
_HLC = re.compile(r"^\d{13}\.\d{5}$")
_DRAFT_KEYS = {
    "content",
    "encrypted",
    "importance",
    "pinned",
    "tags",
    "metadata",
    "source",
    "thread",
    "position",
}
INT32 = 2**31 - 1  # PostgreSQL `integer` columns: positions, chunks, recall counts
MAX_DEPTH = 32  # of metadata: deeper is data, and deep enough to exhaust a recursive reader
MAX_METADATA_CHARS = 1_000_000
MAX_AGENT = 128  # the agent columns
MAX_MEMORY_ID = 36
MAX_TAG = 128
MAX_THREAD = 256
MAX_LINK_KIND = 64
MAX_SOURCE_TYPE = 32
MAX_KEY_ID = 64


def shown(value: Any) -> str:
    """The start of a value for an error message (never a deep or huge repr)."""
    if isinstance(value, str | int | float | bool | type(None)):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge number"
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"


def text(value: Any, name: str, limit: int, *, empty: bool = False) -> str:
    """Text both databases keep as given: at most ``limit`` characters, valid Unicode, no NUL."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text, not {type(value).__name__}")
    if not empty and not value.strip():
        raise ValidationError(f"{name} is empty")
    if len(value) > limit:
        raise ValidationError(f"{name} has {len(value):,} characters; the limit is {limit:,}")
    if "\x00" in value:
        raise ValidationError(f"{name} contains NUL characters (binary data?)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{name} is not valid Unicode text ({exc.reason})") from exc
    return value


def number(value: Any, name: str, least: float = -math.inf, most: float = math.inf) -> float:
    """A finite number in ``least..most``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number, not {shown(value)}")
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out) or not least <= out <= most:
        where = f" in {least:g}..{most:g}" if math.isfinite(least) or math.isfinite(most) else ""
        raise ValidationError(f"{name} must be a finite number{where}, not {shown(value)}")
    return out


def whole(value: Any, name: str, least: int = 0, most: int = INT32) -> int:
    """A whole number in ``least..most``."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValidationError(f"{name} must be a whole number in {least}..{most}, not {shown(value)}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false, not {shown(value)}")
    return value


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
    encrypted: bool = False


def namespace(value: Any) -> str:
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise ValidationError(
            f"invalid namespace {shown(value)}: 1-128 characters of letters, digits and ._:@/- "
            "starting with a letter or digit"
        )
    return value


def principal(value: Any, default: Principal) -> Principal:
    if value is None:
        return default
    if isinstance(value, Principal):
        value = value.id
    if not isinstance(value, str):
        raise ValidationError(f"invalid principal {shown(value)}: give a Principal or an agent id")
    return Principal(text(value, "agent id", MAX_AGENT))


def memory_id(value: Any) -> str:
    """An id to look up (an id that cannot exist is an error, not a miss)."""
    return text(value, "memory id", MAX_MEMORY_ID)


def content(value: Any, limit: int) -> str:
    if isinstance(value, str) and len(value) > limit:
        raise ValidationError(
            f"content has {len(value):,} characters; the limit is {limit:,} (max_content_chars)"
        )
    return text(value, "content", limit)


def content_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def importance(value: Any) -> float:
    return number(value, "importance", 0.0, 1.0)


def weight(value: Any) -> float:
    out = number(value, "link weight", 0.0, 1.0)
    if out == 0:
        raise ValidationError("link weight must be in (0, 1], not 0")
    return out


def tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError("tags must be a list of strings")
    return tuple(sorted({text(tag, "tag", MAX_TAG).strip() for tag in value}))


def metadata(value: Any) -> dict[str, Any]:
    """A JSON object both databases keep as given: string keys, finite numbers, text without
    NUL, at most ``MAX_DEPTH`` levels (checked without recursion: any depth is refused
    cleanly) and ``MAX_METADATA_CHARS`` characters as JSON."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"metadata must be a mapping, not {type(value).__name__}")
    if not value:
        return {}
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                raise ValidationError(f"metadata is nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, Mapping):
                for key in node:
                    text(key, "metadata key", MAX_METADATA_CHARS, empty=True)
                pending.extend((v, depth + 1) for v in node.values())
            else:
                pending.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            text(node, "metadata text", MAX_METADATA_CHARS, empty=True)
        elif isinstance(node, float):
            number(node, "metadata number")
        elif isinstance(node, int) and not isinstance(node, bool):
            whole(node, "metadata whole number", -(2**63), 2**63 - 1)  # what every JSON reader holds
        elif not isinstance(node, bool) and node is not None:
            raise ValidationError(f"metadata must be JSON: {type(node).__name__} values are not")
    dumped = json.dumps(dict(value), allow_nan=False)
    if len(dumped) > MAX_METADATA_CHARS:
        raise ValidationError(
            f"metadata is {len(dumped):,} characters as JSON; the limit is {MAX_METADATA_CHARS:,}"
        )
    return dict(json.loads(dumped))


MAX_SOURCE_URL = 2_000  # indexed: a PostgreSQL index entry holds at most ~2,700 bytes


def source(value: Any) -> Source | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            value = Source(**value)
        except TypeError as exc:
            raise ValidationError(f"invalid source: {exc}") from exc
    if not isinstance(value, Source):
        raise ValidationError("source must be a Source or a mapping with type, url, chunk, ingested_at")
    text(value.type, "source type", MAX_SOURCE_TYPE)
    if value.url is not None:
        text(value.url, "source url", MAX_SOURCE_URL)
    if value.chunk is not None:
        whole(value.chunk, "source chunk")
    if value.ingested_at is not None:
        timestamp(value.ingested_at)
    return value


def source_type(value: Any) -> str | None:
    return None if value is None else text(value, "source type", MAX_SOURCE_TYPE)


def thread(value: Any, position: Any) -> tuple[str | None, int | None]:
    if value is not None:
        text(value, "thread", MAX_THREAD)
    if position is not None:
        if value is None:
            raise ValidationError("a position needs a thread")
        whole(position, "position")
    return value, position


def link_kind(value: Any) -> str:
    return text(value, "link kind", MAX_LINK_KIND)


def zone_config(thresholds: Any, capacities: Any) -> dict[str, dict[str, Any]]:
    """``configure_zones`` arguments: zone names to finite thresholds and whole capacities."""
    out: dict[str, dict[str, Any]] = {"thresholds": {}, "capacities": {}}
    for name, given, value_of in (
        ("thresholds", thresholds, lambda v, n: number(v, n, 0.0, 1.0)),
        ("capacities", capacities, lambda v, n: whole(v, n)),
    ):
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ValidationError(f"{name} must map zone names to values, not {shown(given)}")
        for zone, v in given.items():
            if not isinstance(zone, str | Zone) or zone not in {z.value for z in Zone} | set(Zone):
                raise ValidationError(
                    f"unknown zone {shown(zone)} in {name}; zones: {[z.value for z in Zone]}"
                )
            out[name][Zone(zone).value] = value_of(v, f"{name[:-1]} of {Zone(zone).value}")
    return out


def draft(item: Any, limit: int) -> Draft:
    """A ``Draft`` from a string or a mapping of store() keyword arguments."""
    if isinstance(item, str):
        item = {"content": item}
    if not isinstance(item, Mapping):
        raise ValidationError(f"cannot store {type(item).__name__}; give text or a mapping")
    unknown = set(item) - _DRAFT_KEYS
    if unknown:
        raise ValidationError(f"unknown fields {sorted(unknown)}; known: {sorted(_DRAFT_KEYS)}")
    body = content(item.get("content"), limit)
    th, pos = thread(item.get("thread"), item.get("position"))
    pinned = flag(item.get("pinned", False), "pinned")
    return Draft(
        content=body,
        content_hash=content_hash(body),
        importance=importance(item.get("importance", 0.5)),
        pinned=pinned,
        tags=tags(item.get("tags")),
        metadata=metadata(item.get("metadata")),
        source=source(item.get("source")),
        thread=th,
        position=pos,
        encrypted=flag(item.get("encrypted", False), "encrypted"),
    )


def changes(
    limit: int, content_: Any = None, importance_: Any = None, pinned: Any = None, metadata_: Any = None
) -> dict[str, Any]:
    """``update``'s new values by column, checked; those given as None stay as they are."""
    out: dict[str, Any] = {}
    if content_ is not None:
        out["content"] = content(content_, limit)
        out["content_hash"] = content_hash(content_)
    if importance_ is not None:
        out["importance"] = importance(importance_)
    if pinned is not None:
        out["pinned"] = flag(pinned, "pinned")
    if metadata_ is not None:
        out["meta"] = metadata(metadata_)
    return out


def items(value: Any) -> list[Any]:
    """A batch for store_many: an iterable of texts or mappings (not a single one)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValidationError("store_many takes a list of texts or mappings")
    return list(value)


def record(x: Any, limit: int) -> None:
    """Check a complete memory (from an import) field by field."""
    text(x.id, "memory id", MAX_MEMORY_ID)
    content(x.content, limit)
    importance(x.importance)
    flag(x.pinned, "pinned")
    whole(x.recall_count, "recall_count")
    for name in ("created_at", "updated_at", "last_access_at"):
        number(getattr(x, name), name)
    for name in ("last_recalled_at", "deleted_at"):
        timestamp(getattr(x, name))
    if not isinstance(x.zone, Zone):
        raise ValidationError(f"unknown zone {shown(x.zone)}")
    number(x.score, "score", 0.0, 1.0)
    tags(x.tags)
    metadata(x.metadata)
    source(x.source)
    thread(x.thread, x.position)
    flag(x.encrypted, "encrypted")
    if x.key_id is not None:
        text(x.key_id, "key_id", MAX_KEY_ID)
    text(x.origin_agent, "origin_agent", MAX_AGENT)
    if not isinstance(x.hlc, str) or (x.hlc and not _HLC.match(x.hlc)):  # "": stamped on import
        raise ValidationError(
            f"hlc must be a hybrid-logical-clock stamp like 1700000000000.00001, not {shown(x.hlc)}"
        )
    if not isinstance(x.vector_clock, dict):
        raise ValidationError("vector_clock must map agent ids to counters")
    for agent, count in x.vector_clock.items():
        text(agent, "vector_clock agent", MAX_AGENT)
        whole(count, "vector_clock counter", 0, 2**53)


def link_record(x: Any) -> None:
    """Check a link from an import."""
    for name in ("source_id", "target_id"):
        text(getattr(x, name), f"link {name}", MAX_MEMORY_ID)
    link_kind(x.kind)
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
        raise ValidationError(f"unknown zone in {shown(value)}; zones: {[z.value for z in Zone]}") from exc


def timestamp(value: Any) -> float | None:
    """A datetime or epoch seconds as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationError("give time-zone aware datetimes (e.g. datetime.now(UTC))")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value, "time")
    raise ValidationError(f"invalid time {shown(value)}")


def int_in_range(value: Any, name: str, most: int, least: int = 1) -> int:
    return whole(value, name, least, most)
