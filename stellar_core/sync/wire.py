"""Change events on the wire: what a replica puts on a namespace's stream, and the checks a
received one passes before anything is applied (what fails them is held, never applied).

An entry has two fields: ``e``, the event as JSON, and ``s``, its HMAC-SHA256 under the shared
``sync_secret`` (when one is set: an event without a valid one is forged).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from stellar_core import validation as check
from stellar_core.errors import BadEvent, ValidationError
from stellar_core.models import ChangeEvent, Memory, Op

VERSION = 1  # of the event format; a newer one is held until this code is upgraded
SHARED = frozenset(Op) - {Op.PURGE}  # each replica purges its own tombstones
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}:\d{1,19}$")
_HLC = re.compile(r"^\d{13}\.\d{5}$")
_UPDATABLE = {"content", "content_hash", "key_id", "importance", "pinned", "metadata", "tags", "hlc",
              "vector_clock", "encrypted"}  # fmt: skip


@dataclass(frozen=True)
class Envelope:
    """A change event with its id across replicas (``<replica>:<seq>``), and the memory's
    vector when it carries one (so the receiver need not embed the content again)."""

    id: str
    event: ChangeEvent
    vector: np.ndarray | None = None
    model: str | None = None

    @property
    def replica(self) -> str:
        return self.id.rsplit(":", 1)[0]


def to_doc(env: Envelope) -> dict[str, Any]:
    """The event as the JSON object on the wire."""
    e = env.event
    doc: dict[str, Any] = {
        "v": VERSION, "id": env.id, "ns": e.namespace, "mid": e.memory_id, "op": e.op.value, "agent": e.agent,
        "hlc": e.hlc, "at": e.created_at, "vc": e.vector_clock, "p": e.payload,
    }  # fmt: skip
    if env.vector is not None:
        doc["vec"] = base64.b64encode(np.asarray(env.vector, dtype="<f4").tobytes()).decode()
        doc["model"] = env.model
    return doc


def body_of(env: Envelope) -> str:
    """The event as JSON text (how a held one is kept)."""
    return orjson.dumps(to_doc(env)).decode()


def encode(env: Envelope, secret: bytes | None) -> dict[str, bytes]:
    """The stream entry's fields."""
    body = body_of(env).encode()
    fields = {"e": body}
    if secret is not None:
        fields["s"] = sign(body, secret).encode()
    return fields


def sign(body: bytes, secret: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def decode(fields: dict[bytes, bytes], namespace: str, secret: bytes | None) -> Envelope:
    """The envelope of a stream entry of ``namespace``'s stream; ``BadEvent`` says what is wrong."""
    body = fields.get(b"e")
    if body is None:
        raise BadEvent("malformed event: no 'e' field")
    if secret is not None:
        given = fields.get(b"s", b"").decode(errors="replace")
        if not hmac.compare_digest(given, sign(body, secret)):
            raise BadEvent("forged event: its signature does not match the shared sync secret")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"malformed event: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BadEvent("malformed event: not a JSON object")
    version = doc.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadEvent("malformed event: no format version")
    if version > VERSION:
        raise BadEvent(f"event format {version} is newer than this code's ({VERSION}): upgrade stellar")
    try:
        return envelope_of(doc, namespace)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise BadEvent(f"malformed event: {exc}") from exc


def envelope_of(doc: dict[str, Any], namespace: str) -> Envelope:
    """An envelope from a decoded event (checked; raises what ``decode`` turns into ``BadEvent``)."""
    eid, ns, op = doc["id"], doc["ns"], Op(doc["op"])
    if not isinstance(eid, str) or not _ID.match(eid):
        raise ValueError(f"bad event id {check.shown(eid)}")
    if ns != namespace:
        raise ValueError(f"an event of namespace {check.shown(ns)} on the stream of {namespace!r}")
    if op not in SHARED:
        raise ValueError(f"{op.value} events are not shared")
    mid = check.memory_id(doc["mid"])
    agent = check.text(doc["agent"], "agent", check.MAX_AGENT)
    hlc, at, vc, payload = doc["hlc"], doc["at"], doc["vc"], doc["p"]
    if not isinstance(hlc, str) or not _HLC.match(hlc):
        raise ValueError(f"bad hybrid-logical-clock stamp {check.shown(hlc)}")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise ValueError("bad event time")
    if not isinstance(vc, dict) or not all(isinstance(k, str) and _count(n) for k, n in vc.items()):
        raise ValueError("bad vector clock")
    if not isinstance(payload, dict):
        raise ValueError("payload is not an object")
    _check_payload(op, mid, ns, payload)
    vector = None
    if isinstance(doc.get("vec"), str):
        vector = np.frombuffer(base64.b64decode(doc["vec"], validate=True), dtype="<f4")
        if not np.all(np.isfinite(vector)):
            vector = None  # the receiver embeds the content itself
    event = ChangeEvent(0, ns, mid, op, agent, hlc, float(at), payload, vc)
    return Envelope(eid, event, vector, doc.get("model") if isinstance(doc.get("model"), str) else None)


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _check_payload(op: Op, mid: str, ns: str, p: dict[str, Any]) -> None:
    if op in (Op.STORE, Op.IMPORT):
        x = Memory.from_dict(p)
        if x.id != mid or x.namespace != ns:
            raise ValueError("the stored memory's id or namespace is not the event's")
        check.record(x, 10**9)  # its length was checked where it was written
    elif op is Op.UPDATE:
        unknown = set(p) - _UPDATABLE
        if unknown:
            raise ValueError(f"update of unknown fields {sorted(unknown)}")
        if "content" in p:
            check.text(p["content"], "content", 10**9)
            check.text(p.get("content_hash"), "content_hash", 128)
        if "importance" in p:
            check.importance(p["importance"])
        if "pinned" in p:
            check.flag(p["pinned"], "pinned")
        if "metadata" in p:
            check.metadata(p["metadata"])
        if "tags" in p:
            check.tags(p["tags"])
    elif op is Op.LINK:
        check.memory_id(p["target_id"])
        check.link_kind(p["kind"])
        check.weight(p["weight"])
    elif op is Op.RECALL:
        check.text(p["replica"], "replica", 64)
        if not _count(p["count"]):
            raise ValueError("bad recall count")
        check.timestamp(p.get("at"))
