"""``mem.security``: grants, API keys and the audit log, for administrators.

Each verb is an ``admin`` action on its target (a namespace, a pattern such as ``team-*``, or
``*`` for keys and the audit log), admitted and audited by the engine like any other.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellar_core import validation as check
from stellar_core.engine import Engine
from stellar_core.errors import (
    ConfigurationError,
    EncryptionError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from stellar_core.models import Principal, Who
from stellar_core.security import audit, crypto, keys
from stellar_core.security.access import Grant, check_pattern, check_role, load_grants
from stellar_core.store.schema import api_keys, grants, memories, meta, namespace_config


@dataclass(frozen=True)
class AuditCheck:
    """What ``verify_audit`` found: records checked, and the first bad one (None: all sound)."""

    checked: int
    first_bad: int | None
    problem: str

    @property
    def intact(self) -> bool:
        return self.first_bad is None and not self.problem


@dataclass(frozen=True)
class Rotation:
    """What ``rotate_keys`` did: memories sealed again with ``primary``, and how many memories
    each key seals now (an old key no longer listed is unused)."""

    primary: str
    resealed: int
    usage: dict[str, int]
    seconds: float


class Security:
    """Administration of one open memory (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- grants ------------------------------------------------------------------------------
    def grant(self, agent: str, namespace: str, role: str, *, principal: Who = None) -> Grant:
        """Give ``agent`` ``role`` (reader, writer, admin) in ``namespace``: a namespace that
        exists, ``prefix*`` or ``*``. Granting again replaces the role."""
        agent, pattern = check.principal(agent, self._engine.principal).id, check_pattern(namespace)
        role = check_role(role)
        with self._engine.administering("grant", pattern, principal) as conn:
            if not pattern.endswith("*") and not _exists(conn, pattern):
                raise NotFoundError(f"no namespace {pattern!r}: grant on one that has memories, or a pattern")
            who = check.principal(principal, self._engine.principal).id
            given = Grant(agent, pattern, role, who, self._engine.clock.now())
            ins = self._engine.db.dialect.insert(grants).values(**vars(given))
            changed = {k: ins.excluded[k] for k in ("role", "granted_by", "granted_at")}
            conn.execute(ins.on_conflict_do_update(index_elements=["principal", "namespace"], set_=changed))
        self._refresh()
        return given

    def revoke(self, agent: str, namespace: str, *, principal: Who = None) -> None:
        """Take ``agent``'s grant on ``namespace`` (the same name or pattern it was given)."""
        agent, pattern = check.principal(agent, self._engine.principal).id, check_pattern(namespace)
        with self._engine.administering("grant", pattern, principal) as conn:
            mine = grants.delete().where(grants.c.principal == agent, grants.c.namespace == pattern)
            gone = conn.execute(mine)
            if not gone.rowcount:
                raise NotFoundError(f"{agent!r} holds no grant on {pattern!r}")
        self._refresh()

    def grants(self, agent: str | None = None, *, principal: Who = None) -> list[Grant]:
        """The grants (of ``agent``, if given) on what the caller administers."""
        who = check.principal(principal, self._engine.principal)
        with self._engine.snapshot() as conn:
            found = load_grants(conn, agent)
        return [g for g in found if self._engine.may(who, "grant", g.namespace)]

    # --- API keys ------------------------------------------------------------------------------
    def create_api_key(
        self,
        agent: str,
        *,
        label: str | None = None,
        expires_days: float | None = None,
        principal: Who = None,
    ) -> str:
        """A new key that acts as ``agent``: returned once, kept only as a hash."""
        agent = check.principal(agent, self._engine.principal).id
        if label is not None:
            check.text(label, "label", 128)
        if expires_days is not None:
            check.number(expires_days, "expires_days", 0.0, 36_500.0)
        key_id, key, digest = keys.new_key()
        now = self._engine.clock.now()
        with self._engine.administering("keys", "*", principal) as conn:
            conn.execute(api_keys.insert().values(
                id=key_id, principal=agent, secret_hash=digest, label=label, created_at=now,
                expires_at=None if expires_days is None else now + expires_days * 86_400.0,
            ))  # fmt: skip
        return key

    def api_keys(self, agent: str | None = None, *, principal: Who = None) -> list[keys.ApiKey]:
        with self._engine.administering("keys", "*", principal) as conn:
            return keys.listed(conn, agent)

    def revoke_api_key(self, key_id: str, *, principal: Who = None) -> None:
        check.text(key_id, "key id", 24)
        with self._engine.administering("keys", "*", principal) as conn:
            done = conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._engine.clock.now())
            )  # fmt: skip
            if not done.rowcount:
                raise NotFoundError(f"no API key {key_id!r} that is not revoked already")

    def authenticate(self, key: str) -> Principal:
        """The principal an API key acts as; ``PermissionDenied`` if it is unknown, expired or
        revoked (and the attempt is audited either way)."""
        engine = self._engine
        try:
            with engine.snapshot() as conn:
                agent = keys.authenticate(conn, key, engine.clock.now())
        except PermissionDenied as exc:
            engine.record(Principal("(unknown)"), "authenticate", None, (), "denied", str(exc))
            raise
        engine.record(Principal(agent), "authenticate", None, (), "allowed", keys.parse(key)[0])
        return Principal(agent)

    # --- encryption keys ------------------------------------------------------------------------
    def rotate_keys(
        self, *, namespace: str | None = None, batch: int = 500, principal: Who = None
    ) -> Rotation:
        """Seal every encrypted memory, and the content in its change events, with the primary
        key, ``batch`` memories per transaction: a run killed mid-way resumes where it stopped
        (those done are sealed with the primary key; the log pass keeps its place)."""
        engine, started = self._engine, time.perf_counter()
        batch = check.int_in_range(batch, "batch", 100_000)
        target = check.namespace(namespace) if namespace is not None else "*"
        engine.authorise("rotate", target, principal)
        if engine.cipher is None:
            raise EncryptionError("no encryption key is configured: nothing to rotate to")
        primary = engine.cipher.keys.primary
        spaces = [target] if namespace is not None else self._sealed_namespaces()
        memories_done = 0
        for ns in spaces:
            while True:
                with engine.writing("rotate", ns, principal) as tx:
                    n = tx.reseal(batch)
                memories_done += n
                if n < batch:
                    break
            place = "rotated:" + hashlib.sha256(f"{primary}\0{ns}".encode()).hexdigest()[:32]
            with engine.reading("rotate", ns, principal) as r:
                after = int(r.conn.execute(sa.select(meta.c.value).where(meta.c.key == place)).scalar() or 0)
            while True:
                with engine.writing("rotate", ns, principal) as tx:
                    last = tx.reseal_log(after, batch * 4)
                    tx.put_meta(place, str(last))
                if last == after:
                    break
                after = last
        usage = self.key_usage(namespace=namespace, principal=principal)
        return Rotation(primary, memories_done, usage, time.perf_counter() - started)

    def key_usage(self, *, namespace: str | None = None, principal: Who = None) -> dict[str, int]:
        """How many memories (live ones and tombstones) each key id seals, in ``namespace`` or
        in all of them."""
        engine = self._engine
        engine.authorise("rotate", check.namespace(namespace) if namespace is not None else "*", principal)
        q = sa.select(memories.c.key_id, sa.func.count()).where(memories.c.key_id.is_not(None))
        if namespace is not None:
            q = q.where(memories.c.namespace == namespace)
        with engine.snapshot() as conn:
            return {k: int(n) for k, n in conn.execute(q.group_by(memories.c.key_id)).tuples()}

    def retire_key(self, key_id: str, *, principal: Who = None) -> None:
        """Take a key out of the key file, once nothing is sealed with it (this rotates first,
        which costs little when a rotation has run to the end)."""
        engine, file = self._engine, self._engine.settings.encryption_key_file
        if engine.cipher is None or key_id not in engine.cipher.keys.ids():
            raise NotFoundError(f"no encryption key {key_id!r} in the key ring")
        if key_id == engine.cipher.keys.primary:
            raise ValidationError(f"key {key_id!r} is the primary key: make another one primary first")
        if file is None:
            raise ConfigurationError("keys given in the environment are retired there: remove it from "
                                     "STELLAR_ENCRYPTION_KEYS once `key_usage` shows it unused")  # fmt: skip
        left = self.rotate_keys(principal=principal).usage.get(key_id, 0)
        if left:
            raise ValidationError(f"key {key_id!r} still seals {left} memories; nothing was changed")
        primary, held = crypto.read_key_file(file)
        crypto.write_key_file(file, primary, {k: v for k, v in held.items() if k != key_id})

    def _sealed_namespaces(self) -> list[str]:
        q = sa.select(memories.c.namespace).where(memories.c.key_id.is_not(None)).distinct()
        with self._engine.snapshot() as conn:
            return sorted(conn.execute(q).scalars())

    # --- the audit log -------------------------------------------------------------------------
    def audit(self, *, limit: int = 100, principal: Who = None) -> list[dict[str, Any]]:
        """The newest audit records, newest first."""
        limit = check.int_in_range(limit, "limit", 10_000)
        self.flush()
        with self._engine.administering("audit", "*", principal) as conn:
            return audit.recent(conn, limit)

    def verify_audit(self, *, principal: Who = None) -> AuditCheck:
        """Walk the chain; the first record that was edited, deleted or moved, if any."""
        self.flush()
        with self._engine.administering("audit", "*", principal) as conn:
            return AuditCheck(*audit.verify(conn))

    def prune_audit(self, *, principal: Who = None) -> int:
        """Drop the records older than ``audit_retention_days``; how many."""
        self._engine.authorise("audit", "*", principal)
        before = self._engine.clock.now() - self._engine.settings.audit_retention_days * 86_400.0
        return audit.prune(self._engine.db, before)

    def flush(self) -> None:
        """Write the audit records still held in memory."""
        if self._engine.audit is not None:
            self._engine.audit.flush()

    def _refresh(self) -> None:
        if self._engine.access is not None:
            self._engine.access.reload()


def _exists(conn: sa.Connection, namespace: str) -> bool:
    in_memories = sa.select(memories.c.seq).where(memories.c.namespace == namespace).limit(1)
    configured = sa.select(namespace_config.c.namespace).where(namespace_config.c.namespace == namespace)
    return conn.execute(in_memories).first() is not None or conn.execute(configured).first() is not None
