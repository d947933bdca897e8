"""Access control, API keys and the audit log, on both backends.

The matrix: every principal (no role, reader, writer, admin) x every operation of the public
API x a namespace it holds its role in and one it holds none in. Each call must be allowed
exactly when the role allows it there; a refused one raises ``PermissionDenied`` and changes
nothing (every namespace's export and the change log are compared before and after).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from stellar_core import (
    NotFoundError,
    PermissionDenied,
    Settings,
    StellarMemory,
    ValidationError,
    consolidate,
    summarise,
)
from stellar_core.store.schema import audit_log, changes

pytestmark = pytest.mark.backends

ROOT = "root"
KEY = base64.b64encode(bytes(range(32))).decode()
SECURE = Settings(access_control=True, admins=[ROOT], audit_log=True, encryption_key=KEY)
RANK = {"none": -1, "reader": 0, "writer": 1, "admin": 2}


def state(mem: StellarMemory) -> str:
    with mem.engine.db.read() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(changes)).scalar_one()
    docs = [mem.export(namespace=ns, principal=ROOT) for ns in ("team", "other")]
    return json.dumps([docs, logged], sort_keys=True)


@pytest.fixture
def secure(open_memory: Callable[..., StellarMemory]) -> StellarMemory:
    mem = open_memory(settings=SECURE, agent=ROOT)
    for ns in ("team", "other"):
        a = mem.store("the backup window is 02:00 UTC", thread="t1", namespace=ns, encrypted=True)
        b = mem.store("Ines owns the on-call rota this week", thread="t1", namespace=ns)
        mem.link(a.id, b.id, namespace=ns)
    mem.security.grant("rita", "team", "reader")
    mem.security.grant("wade", "team", "writer")
    mem.security.grant("ada", "team", "admin")
    return mem


Op = Callable[[StellarMemory, str, str, str], Any]  # (mem, principal, namespace, a memory id there)


def _import(m: StellarMemory, who: str, ns: str, mid: str) -> Any:
    doc = m.export(namespace=ns, principal=ROOT)
    doc["memories"] = [{**doc["memories"][0], "id": "f" * 32, "content": "imported fact"}]
    return m.import_(doc, namespace=ns, principal=who)


OPERATIONS: dict[str, tuple[str, Op]] = {
    "recall": ("reader", lambda m, w, ns, mid: m.recall("backup window", namespace=ns, principal=w)),
    "recall expand": (
        "reader",
        lambda m, w, ns, mid: m.recall("rota", expand=True, namespace=ns, principal=w),
    ),
    "recall filtered": (
        "reader",
        lambda m, w, ns, mid: m.recall("rota", tags=["x"], since=0, namespace=ns, principal=w),
    ),
    "get": ("reader", lambda m, w, ns, mid: m.get(mid, namespace=ns, principal=w)),
    "thread": ("reader", lambda m, w, ns, mid: m.thread("t1", namespace=ns, principal=w)),
    "links": ("reader", lambda m, w, ns, mid: m.links(mid, namespace=ns, principal=w)),
    "stats": ("reader", lambda m, w, ns, mid: m.stats(namespace=ns, principal=w)),
    "memories": ("reader", lambda m, w, ns, mid: m.memories(namespace=ns, principal=w)),
    "events": ("reader", lambda m, w, ns, mid: m.events(namespace=ns, principal=w)),
    "zone_policy": ("reader", lambda m, w, ns, mid: m.zone_policy(ns, principal=w)),
    "store": ("writer", lambda m, w, ns, mid: m.store(f"new fact by {w}", namespace=ns, principal=w)),
    "update": ("writer", lambda m, w, ns, mid: m.update(mid, importance=0.9, namespace=ns, principal=w)),
    "forget": ("writer", lambda m, w, ns, mid: m.forget(mid, namespace=ns, principal=w)),
    "link": (
        "writer",
        lambda m, w, ns, mid: m.link(
            mid, m.thread("t1", namespace=ns, principal=ROOT)[0].id, namespace=ns, principal=w
        ),
    ),
    "export": ("writer", lambda m, w, ns, mid: m.export(namespace=ns, principal=w)),
    "reorbit": ("writer", lambda m, w, ns, mid: m.reorbit(namespace=ns, principal=w)),
    "forget_idle": ("writer", lambda m, w, ns, mid: m.forget_idle(namespace=ns, principal=w)),
    "dedup": ("writer", lambda m, w, ns, mid: consolidate(m, namespace=ns, principal=w)),
    "import": ("admin", _import),
    "configure_zones": (
        "admin",
        lambda m, w, ns, mid: m.configure_zones(capacities={"core": 5}, namespace=ns, principal=w),
    ),
    "grant": ("admin", lambda m, w, ns, mid: m.security.grant("zed", ns, "reader", principal=w)),
    "rotate_keys": ("admin", lambda m, w, ns, mid: m.security.rotate_keys(namespace=ns, principal=w)),
}


def test_every_role_operation_and_namespace(secure: StellarMemory) -> None:
    """0 bypasses, and 0 refusals of what the role allows."""
    wrong: list[str] = []
    cases = 0
    for who, role in (("nobody", "none"), ("rita", "reader"), ("wade", "writer"), ("ada", "admin")):
        for ns in ("team", "other"):
            for name, (needed, op) in OPERATIONS.items():
                mid = secure.store(f"case {cases}", thread="t1", namespace=ns, principal=ROOT).id
                allowed = ns == "team" and RANK[role] >= RANK[needed]
                before = state(secure)
                try:
                    op(secure, who, ns, mid)
                    outcome = "allowed"
                except PermissionDenied:
                    outcome = "denied"
                    if state(secure) != before:
                        wrong.append(f"{who} {name} {ns}: refused, but something changed")
                if outcome != ("allowed" if allowed else "denied"):
                    wrong.append(f"{who} ({role}) {name} in {ns}: {outcome}")
                cases += 1
    assert cases == 4 * 2 * len(OPERATIONS)
    assert wrong == []


def test_what_a_reader_lists_and_finds_stays_in_its_namespaces(secure: StellarMemory) -> None:
    assert secure.namespaces(principal="rita") == ["team"]
    assert secure.namespaces(principal="nobody") == []
    assert secure.namespaces(principal=ROOT) == ["other", "team"]
    for hit in secure.recall("backup window rota", expand=True, k=50, namespace="team", principal="rita"):
        assert hit.memory.namespace == "team"
    secure.security.grant("svc", "*", "writer")  # a service principal: every namespace
    assert secure.namespaces(principal="svc") == ["other", "team"]
    secure.store("a prefixed namespace", namespace="team-b")
    secure.security.grant("tim", "team-*", "reader")
    assert secure.namespaces(principal="tim") == ["team-b"]


def test_jobs_run_as_their_memory_s_agent(
    secure: StellarMemory, open_memory: Callable[..., StellarMemory]
) -> None:
    """The flows open the memory as their own agent (a service principal with a grant)."""
    long = "The rota. " + "Ines covers nights and weekends on the primary pager, then rests. " * 60
    secure.store(long, namespace="team")
    with pytest.raises(PermissionDenied):
        summarise(open_memory(settings=SECURE, agent="rita"), namespace="team")
    result = summarise(open_memory(settings=SECURE, agent="wade"), namespace="team")
    assert result.created == 1


def test_grants_are_checked_and_revoked_at_once(secure: StellarMemory) -> None:
    with pytest.raises(ValidationError, match="unknown role"):
        secure.security.grant("rita", "team", "owner")
    with pytest.raises(NotFoundError, match="no namespace"):
        secure.security.grant("rita", "nowhere", "reader")
    with pytest.raises(NotFoundError):
        secure.security.revoke("rita", "other")
    assert [(g.principal, g.role) for g in secure.security.grants("rita")] == [("rita", "reader")]
    secure.recall("rota", namespace="team", principal="rita")
    secure.security.revoke("rita", "team")
    with pytest.raises(PermissionDenied, match="'rita' may not recall in namespace 'team'"):
        secure.recall("rota", namespace="team", principal="rita")
    # an admin of one namespace sees and gives grants there only
    assert {g.namespace for g in secure.security.grants(principal="ada")} == {"team"}
    with pytest.raises(PermissionDenied):
        secure.security.grant("rita", "*", "admin", principal="ada")


def test_a_grant_made_by_another_process_takes_effect_within_the_refresh(
    secure: StellarMemory, open_memory: Callable[..., StellarMemory], clock: Any
) -> None:
    other = open_memory(settings=SECURE, agent="nobody")
    with pytest.raises(PermissionDenied):
        other.stats(namespace="team")
    secure.security.grant("nobody", "team", "reader")
    with pytest.raises(PermissionDenied):  # still the grants it read a moment ago
        other.stats(namespace="team")
    clock.advance(seconds=SECURE.grants_refresh_seconds + 1)
    assert other.stats(namespace="team").memories > 0


def test_api_keys(secure: StellarMemory, clock: Any) -> None:
    key = secure.security.create_api_key("rita", label="dashboard", expires_days=1)
    assert key.startswith("stk_")
    assert secure.security.authenticate(key).id == "rita"
    listed = secure.security.api_keys()
    assert [(k.principal, k.label) for k in listed] == [("rita", "dashboard")]
    with pytest.raises(PermissionDenied, match="unknown API key"):
        secure.security.authenticate(key[:-2] + "xx")
    with pytest.raises(PermissionDenied, match="not an API key"):
        secure.security.authenticate("hunter2")
    with sa.create_engine(secure.engine.db.url).connect() as conn:  # only a hash is kept
        dumped = json.dumps([list(r) for r in conn.execute(sa.text("SELECT * FROM api_keys"))])
    assert key.rsplit("_", 1)[1] not in dumped
    clock.advance(days=2)
    with pytest.raises(PermissionDenied, match="expired"):
        secure.security.authenticate(key)
    other = secure.security.create_api_key("wade")
    secure.security.revoke_api_key(other.split("_")[1])
    with pytest.raises(PermissionDenied, match="revoked"):
        secure.security.authenticate(other)
    with pytest.raises(PermissionDenied):
        secure.security.create_api_key("rita", principal="wade")  # only admins of every namespace


def test_the_audit_log_records_reads_and_refusals_without_content(secure: StellarMemory) -> None:
    hits = secure.recall("backup window", namespace="team", principal="rita")
    with pytest.raises(PermissionDenied):
        secure.forget(hits[0].memory.id, namespace="team", principal="rita")
    records = secure.security.audit(limit=50)
    mine = [r for r in records if r["principal"] == "rita"]
    assert [(r["action"], r["outcome"]) for r in mine] == [("forget", "denied"), ("recall", "allowed")]
    assert mine[1]["memory_ids"] == [h.memory.id for h in hits]
    assert mine[1]["namespace"] == "team"
    with secure.engine.db.read() as conn:
        dumped = json.dumps([list(r) for r in conn.execute(sa.select(audit_log))], default=str)
    assert "backup" not in dumped and "Ines" not in dumped
    check = secure.security.verify_audit()
    assert check.intact and check.checked == len(secure.security.audit(limit=10_000)) - 1


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate"])
def test_audit_verify_finds_the_first_tampered_record(secure: StellarMemory, tamper: str) -> None:
    for _ in range(5):
        secure.recall("rota", namespace="team", principal="rita")
    secure.security.flush()
    with secure.engine.db.read() as conn:
        seqs = list(conn.execute(sa.select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars())
    target = seqs[len(seqs) // 2]
    with secure.engine.db.write() as conn:
        a = audit_log.c
        if tamper == "edit":
            conn.execute(audit_log.update().where(a.seq == target).values(principal="mallory"))
        elif tamper == "delete":
            conn.execute(audit_log.delete().where(a.seq == target))
        elif tamper == "reorder":
            first = conn.execute(sa.select(audit_log).where(a.seq == target)).one()._asdict()
            second = conn.execute(sa.select(audit_log).where(a.seq == target + 1)).one()._asdict()
            conn.execute(audit_log.update().where(a.seq == target).values(**{**second, "seq": target}))
            conn.execute(audit_log.update().where(a.seq == target + 1).values(**{**first, "seq": target + 1}))
        else:
            conn.execute(audit_log.delete().where(a.seq >= seqs[-2]))
    found = secure.security.verify_audit()
    assert not found.intact
    if tamper == "truncate":
        assert found.first_bad is None and "newest" in found.problem
    elif tamper == "delete":
        assert found.first_bad == target + 1
    else:
        assert found.first_bad == target


def test_audit_retention_keeps_the_chain_verifiable(secure: StellarMemory, clock: Any) -> None:
    secure.recall("rota", namespace="team", principal="rita")
    secure.security.flush()
    clock.advance(days=400)
    secure.recall("rota", namespace="team", principal="rita")
    dropped = secure.security.prune_audit()
    assert dropped > 0
    assert secure.security.verify_audit().intact
    assert all(r["at"] > clock.now() - 10 for r in secure.security.audit(limit=1000))


def test_off_by_default_one_implicit_admin(mem: StellarMemory) -> None:
    x = mem.store("anything goes", namespace="a", principal="anyone")
    mem.forget(x.id, namespace="a", principal="someone-else")
    mem.security.grant("rita", "a", "reader")  # grants can be prepared before turning it on
    assert mem.engine.audit is None
