"""Access control: principals hold roles per namespace; every action needs a permission.

Roles nest: a writer may do what a reader may, an admin what a writer may (decision 0028):

- anyone: list the namespaces (the list holds only those the principal may read).
- ``reader``: recall, get (and thread, links, a page of memories), stats, events, sync (a
  replica of what one may read: its events applied, its status and conflicts); an
  encrypted memory is decrypted for whoever may read it.
- ``writer``: store, update, forget, link, export, and the maintenance jobs (ingest,
  summarise, dedup, reorbit and forgetting).
- ``admin``: import, zone configuration, grants, API keys, key rotation, purge, the audit log.

A grant names a namespace exactly, by prefix (``team-*``) or all of them (``*``), so service
principals such as the flows' can hold one grant for every namespace. The ``admins`` setting
names principals that are admins everywhere, whatever the grants say (to bootstrap).
Access control is off by default (one implicit admin, for the single-user embedded memory);
when on, whatever no grant allows is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from stellar_core.errors import PermissionDenied, ValidationError
from stellar_core.store.schema import grants

ROLES = ("reader", "writer", "admin")  # each allowed what the one before it is, and more
_ANYONE = ("namespaces",)  # the answer is filtered instead
_READER = ("recall", "get", "stats", "events", "sync")
_WRITER = ("store", "update", "forget", "link", "export", "ingest", "summarise", "dedup", "reorbit")
_ADMIN = ("import", "configure", "grant", "keys", "rotate", "purge", "audit")
_LEAST_ROLE = {
    **dict.fromkeys(_READER, "reader"),
    **dict.fromkeys(_WRITER, "writer"),
    **dict.fromkeys(_ADMIN, "admin"),
}
ACTIONS = frozenset(_LEAST_ROLE) | frozenset(_ANYONE)


@dataclass(frozen=True)
class Grant:
    """``role`` for ``principal`` in the namespaces ``namespace`` names (exact, ``prefix-*``, ``*``)."""

    principal: str
    namespace: str
    role: str
    granted_by: str
    granted_at: float


def covers(pattern: str, namespace: str) -> bool:
    """Whether a grant's namespace pattern names ``namespace`` (itself possibly a pattern)."""
    if pattern in ("*", namespace):
        return True
    return pattern.endswith("*") and namespace.startswith(pattern[:-1])


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def check_pattern(pattern: str) -> str:
    """A namespace pattern: a namespace name, ``prefix*`` or ``*``."""
    from stellar_core.validation import namespace as check_namespace

    if pattern != "*":
        check_namespace(pattern[:-1] + "x" if pattern.endswith("*") else pattern)
    return pattern


class AccessControl:
    """Grants held in memory (a check is a few dictionary lookups, no query), read again from
    the database every ``refresh_seconds`` and at once after this process changes them: a
    grant another process revoked stops working here within ``refresh_seconds``."""

    def __init__(
        self,
        load: Callable[[], list[Grant]],
        admins: Iterable[str],
        refresh_seconds: float,
        now: Callable[[], float],
    ) -> None:
        self._load, self._now = load, now
        self._admins = frozenset(admins)
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._by_principal: dict[str, list[Grant]] = {}
        self._loaded_at = -float("inf")

    def role(self, principal: str, namespace: str) -> str | None:
        """The highest role ``principal`` holds in ``namespace`` (None: none)."""
        if principal in self._admins:
            return "admin"
        if self._now() - self._loaded_at > self._refresh:
            self.reload()
        best = -1
        for g in self._by_principal.get(principal, ()):
            if covers(g.namespace, namespace):
                best = max(best, ROLES.index(g.role))
        return ROLES[best] if best >= 0 else None

    def check(self, principal: str, action: str, namespace: str) -> None:
        """Raise ``PermissionDenied`` unless ``principal`` may do ``action`` in ``namespace``."""
        needed = _LEAST_ROLE.get(action)
        if action in _ANYONE:
            return
        if needed is None:
            raise PermissionDenied(f"unknown action {action!r}")
        role = self.role(principal, namespace)
        if role is None or ROLES.index(role) < ROLES.index(needed):
            held = f"holds {role}" if role else "holds no role"
            why = f"it {held} there, {action} needs {needed}"
            raise PermissionDenied(f"{principal!r} may not {action} in namespace {namespace!r}: {why}")

    def reload(self) -> None:
        loaded = self._load()
        by_principal: dict[str, list[Grant]] = {}
        for g in loaded:
            by_principal.setdefault(g.principal, []).append(g)
        with self._lock:
            self._by_principal, self._loaded_at = by_principal, self._now()


def load_grants(conn: sa.Connection, principal: str | None = None) -> list[Grant]:
    q = sa.select(grants).order_by(grants.c.principal, grants.c.namespace)
    if principal is not None:
        q = q.where(grants.c.principal == principal)
    return [Grant(r.principal, r.namespace, r.role, r.granted_by, r.granted_at) for r in conn.execute(q)]
