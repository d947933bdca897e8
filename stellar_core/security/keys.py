"""API keys for the servers and the dashboard: ``stk_<id>_<secret>``, bound to a principal.

The secret is 32 random bytes, shown once when the key is made; the database keeps only its
SHA-256 (a random 256-bit secret needs no slow hash: nothing to guess), so whoever reads the
database cannot act with it. A key may expire, and may be revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from stellar_core.errors import PermissionDenied
from stellar_core.store.schema import api_keys

PREFIX = "stk_"


@dataclass(frozen=True)
class ApiKey:
    """What is known of a key (never its secret)."""

    id: str
    principal: str
    label: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None


def new_key() -> tuple[str, str, str]:
    """(key id, the whole key to hand out, the hash to keep)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", _hash(secret)


def parse(key: str) -> tuple[str, str]:
    """(key id, secret); ``PermissionDenied`` if it is not shaped like a key."""
    if not isinstance(key, str) or not key.startswith(PREFIX) or key.count("_") < 2:
        raise PermissionDenied("not an API key")
    key_id, _, secret = key[len(PREFIX) :].partition("_")
    return key_id, secret


def authenticate(conn: sa.Connection, key: str, now: float) -> str:
    """The principal the key acts as; ``PermissionDenied`` if unknown, revoked or expired."""
    key_id, secret = parse(key)
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise PermissionDenied("unknown API key")
    if row.revoked_at is not None:
        raise PermissionDenied(f"API key {key_id} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise PermissionDenied(f"API key {key_id} expired")
    return str(row.principal)


def listed(conn: sa.Connection, principal: str | None = None) -> list[ApiKey]:
    q = sa.select(api_keys).order_by(api_keys.c.created_at)
    if principal is not None:
        q = q.where(api_keys.c.principal == principal)
    return [
        ApiKey(r.id, r.principal, r.label, r.created_at, r.expires_at, r.revoked_at) for r in conn.execute(q)
    ]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
