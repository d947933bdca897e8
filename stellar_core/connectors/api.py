"""JSON API endpoints -> memories, polled.

Each item of the listing is one source keyed ``<endpoint url>#<item key>`` (``sources``):
an updated item replaces its memory, an unchanged one writes nothing. Polls are
conditional: the ETag / Last-Modified of the last successful poll of a URL in a namespace
are kept in ``stellar_meta``, so an endpoint that answers 304 costs one request and no work.
Items missing from a listing are not forgotten: APIs paginate and filter, so absence from
one response does not mean an item is gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.connectors.http import fetch
from stellar_core.connectors.sources import Document, ingest_document
from stellar_core.errors import PermanentError, SourceError, ValidationError
from stellar_core.models import IngestResult

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory

__all__ = ["ACCEPT", "ApiSource", "ingest_api"]

ACCEPT = ("application/json", "text/json", "+json")
_MISSING = object()


@dataclass(frozen=True)
class ApiSource:
    """A JSON endpoint and how to read its items.

    ``items``: dotted path to the list of items in the response ("data.results"; a number
    indexes a list); "" means the response itself. A single object there is one item.
    ``key``: dotted path to the field that identifies an item. ``fields``: the fields whose
    values become the memory, one "field: value" line each; empty means the whole item as
    pretty JSON. ``title``: a field whose value heads the memory. ``headers``: sent with the
    request (a token, say), to the endpoint's own origin only.
    """

    url: str
    items: str = ""
    key: str = "id"
    fields: tuple[str, ...] = ()
    title: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.fields, list):  # from JSON (a flow's parameters): keep it hashable
            object.__setattr__(self, "fields", tuple(self.fields))


def ingest_api(
    mem: StellarMemory, source: ApiSource, *, namespace: str | None = None, importance: float = 0.5
) -> IngestResult:
    """Poll the endpoint and store its items; a 304 Not Modified writes nothing.

    Items without a key (or with one seen earlier in the same response) are reported in
    ``skipped``. Raises ``SourceError`` (malformed URL, 4xx, invalid JSON, ``items`` leading
    to no list or object, ...) or ``SourceUnavailable`` (try later).
    """
    check.importance(importance)
    ns, _ = mem.engine.scope(namespace, None)
    _check(source)
    state_key = "http:" + hashlib.sha256(f"{ns} {source.url}".encode()).hexdigest()[:40]
    shape = _shape(source)
    last = _load(mem, state_key)
    if last.get("shape") != shape:  # read differently now: the 304 would hide the new reading
        last = {}
    page = fetch(
        source.url,
        mem.settings,
        accept=ACCEPT,
        etag=last.get("etag"),
        last_modified=last.get("last_modified"),
        headers=source.headers,
    )
    if page is None:
        known = int(last.get("items", 0))
        return IngestResult(sources=known, unchanged=known)
    try:
        document = json.loads(page.text)
    except ValueError as exc:
        raise SourceError(f"{source.url}: invalid JSON: {exc}") from exc
    result = IngestResult()
    seen: set[str] = set()
    for i, item in enumerate(_items(source, document)):
        result += _ingest_item(mem, source, i, item, seen, ns, importance)
    # remembered only now: a poll that failed half-way must not be answered 304 next time
    state = {"etag": page.etag, "last_modified": page.last_modified, "items": result.sources, "shape": shape}
    _save(mem, state_key, state)
    return result


def _ingest_item(
    mem: StellarMemory,
    source: ApiSource,
    index: int,
    item: Any,
    seen: set[str],
    namespace: str,
    importance: float,
) -> IngestResult:
    where = f"{source.url} item {index}"
    if not isinstance(item, Mapping):
        return IngestResult(skipped=[(where, f"not a JSON object but {_kind(item)}")])
    value = _get(item, source.key)
    if value is _MISSING or value is None or value == "" or isinstance(value, Mapping | list):
        return IngestResult(skipped=[(where, f"no {source.key!r} field to identify it")])
    item_key = _render(value)
    if item_key in seen:
        return IngestResult(skipped=[(where, f"{source.key} {item_key!r} already seen in this response")])
    seen.add(item_key)
    text = _text(source, item)
    key = f"{source.url}#{item_key}"
    if not text:
        return IngestResult(skipped=[(key, f"none of the fields {list(source.fields)} has a value")])
    doc = Document("api", key, text, metadata={"api_url": source.url, "item_key": item_key})
    try:
        return ingest_document(mem, doc, namespace=namespace, importance=importance)
    except PermanentError as exc:  # e.g. a key too long for a source URL: this item only
        return IngestResult(skipped=[(key, str(exc))])


def _items(source: ApiSource, document: Any) -> list[Any]:
    found = _get(document, source.items) if source.items else document
    if found is _MISSING:
        raise SourceError(f"{source.url}: {source.items!r} not found in the response")
    if isinstance(found, list):
        return found
    if isinstance(found, Mapping):
        return [found]
    where = repr(source.items) if source.items else "the response"
    raise SourceError(f"{source.url}: {where} is {_kind(found)}, not a list or an object")


def _text(source: ApiSource, item: Mapping[str, Any]) -> str:
    if source.fields:
        lines = [(name, _get(item, name)) for name in source.fields]
        body = "\n".join(f"{name}: {_render(v)}" for name, v in lines if v is not _MISSING and v is not None)
    else:  # sorted keys: an API that reorders them has not changed the item
        body = json.dumps(item, indent=2, ensure_ascii=False, sort_keys=True)
    if not body.strip():
        return ""
    heading = _get(item, source.title) if source.title else None
    if heading is _MISSING or heading is None or not _render(heading).strip():
        return body
    return f"# {_render(heading).strip()}\n\n{body}"


def _get(value: Any, path: str) -> Any:
    """The value at a dotted path ("a.b.0.c"), or ``_MISSING``."""
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)  # numbers, booleans, nested JSON


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _check(source: ApiSource) -> None:
    if not isinstance(source, ApiSource):
        raise ValidationError(f"expected an ApiSource, not {type(source).__name__}")
    if not isinstance(source.key, str) or not source.key:
        raise ValidationError("ApiSource.key must name the field that identifies an item")
    if not isinstance(source.items, str) or not (source.title is None or isinstance(source.title, str)):
        raise ValidationError("ApiSource.items and ApiSource.title must be dotted paths (strings)")
    if isinstance(source.fields, str) or not all(isinstance(f, str) and f for f in source.fields):
        raise ValidationError("ApiSource.fields must be a tuple of field names")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in source.headers.items()):
        raise ValidationError("ApiSource.headers must map strings to strings")


def _shape(source: ApiSource) -> str:
    """How the response is read: when it changes, the next poll must not be conditional."""
    reading = [source.items, source.key, list(source.fields), source.title]
    return hashlib.sha256(json.dumps(reading).encode()).hexdigest()[:16]


def _load(mem: StellarMemory, key: str) -> dict[str, Any]:
    with mem.engine.reading("ingest") as r:
        value = reads.meta_value(r.conn, key)
    try:
        state = json.loads(value) if value else {}
    except ValueError:  # unreadable: poll unconditionally and write it afresh
        return {}
    return state if isinstance(state, dict) else {}


def _save(mem: StellarMemory, key: str, state: Mapping[str, Any]) -> None:
    with mem.engine.writing("ingest") as tx:
        tx.put_meta(key, json.dumps(state))
