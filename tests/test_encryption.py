"""Encryption at rest and key rotation, on both backends.

The secret-grep: the plaintext of an encrypted memory must be in no table, index, change-log
payload, cache entry or log line. Each grep first finds a plaintext memory stored beside it,
so the grep itself is shown to work.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from stellar_core import (
    ConfigurationError,
    EncryptionError,
    KeyRing,
    Settings,
    StellarMemory,
    ValidationError,
)
from stellar_core.security import crypto
from stellar_core.store.schema import changes, memories
from tests.services import Redis

pytestmark = pytest.mark.backends

SECRET = "the vault PIN is 4417 and the passphrase is zanzibar-quokka"
WORDS = (b"zanzibar", b"quokka", b"vault PIN")  # (digits turn up in vectors printed as text)
PLAIN = "the coffee machine on floor 3 takes tokens named marmalade"  # stored in the clear
K1, K2 = base64.b64encode(b"1" * 32).decode(), base64.b64encode(b"2" * 32).decode()


def keyed(*ids: str, primary: str | None = None) -> Settings:
    pool = {"k1": K1, "k2": K2}
    return Settings(encryption_keys={k: pool[k] for k in ids}, encryption_primary_key=primary)


def everything(mem: StellarMemory) -> bytes:
    """Every byte the database holds: the SQLite files (after the product's checkpoint), or
    every row of every PostgreSQL table as text."""
    db = mem.engine.db
    if db.dialect.name == "sqlite":
        mem.flush()
        db.checkpoint()
        path = Path(str(db.url.database))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    out = []
    with db.read() as conn:
        tables = conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).scalars()
        for t in list(tables):
            out += [str(r[0]) for r in conn.exec_driver_sql(f'SELECT t::text FROM "{t}" t')]
    return "\n".join(out).encode()


def test_an_encrypted_memory_reads_and_recalls_as_usual(open_memory: Callable[..., StellarMemory]) -> None:
    mem = open_memory(settings=keyed("k1"))
    x = mem.store(SECRET, encrypted=True, tags=["vault"])
    assert (x.content, x.encrypted, x.key_id) == (SECRET, True, "k1")
    mem.store_many([PLAIN, "lunch is at noon", "the printer jams on Mondays"])
    assert mem.get(x.id).content == SECRET
    by_word = mem.recall("zanzibar", k=1)  # a word the model has no meaning for: the keyed lexical arm
    assert by_word[0].memory.id == x.id and "lexical" in by_word[0].via
    assert mem.recall("what is the vault PIN?", k=1)[0].memory.content == SECRET
    assert mem.store(SECRET, encrypted=True, tags=["vault"]).id == x.id  # exact dedup, by keyed hash
    changed = mem.update(x.id, content=SECRET + " until Friday")
    assert changed.content == SECRET + " until Friday" and mem.get(x.id).encrypted
    assert mem.store("my api key is sk-123", tags=["api_key"]).encrypted  # auto_encrypt_tags


def test_the_plaintext_is_nowhere_in_the_database_cache_or_logs(
    open_memory: Callable[..., StellarMemory], redis_server: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    redis.Redis.from_url(redis_server.url(3)).flushdb()
    every_zone = ["core", "inner", "outer", "belt", "cloud"]
    settings = keyed("k1").model_copy(
        update={"redis_url": redis_server.url(3), "audit_log": True, "cache_zones": every_zone}
    )
    mem = open_memory(settings=settings)
    x = mem.store(SECRET, encrypted=True, thread="t", tags=["vault"])
    y = mem.store(PLAIN, thread="t")
    mem.update(x.id, importance=0.9, content=SECRET + "!")
    mem.link(x.id, y.id)
    mem.recall("vault PIN zanzibar")
    mem.export()
    mem.flush()
    for ident in (x.id, y.id):
        mem.get(ident)  # cached
        mem.get(ident)
    r = redis.Redis.from_url(redis_server.url(3))
    cached = b"".join(
        k + (r.get(k) or b"" if r.type(k) == b"string" else b" ".join(r.smembers(k))) for k in r.scan_iter()
    )
    assert b"marmalade" in cached
    assert not [w for w in WORDS if w in cached]
    dump = everything(mem)
    assert b"marmalade" in dump  # the grep works
    assert not [w for w in WORDS if w in dump]
    assert not [w for w in WORDS if w.decode() in caplog.text]


def test_a_wrong_or_missing_key_or_an_altered_ciphertext_is_a_clear_error(
    open_memory: Callable[..., StellarMemory], tmp_path: Path
) -> None:
    mem = open_memory(settings=keyed("k1"))
    x = mem.store(SECRET, encrypted=True)
    y = mem.store("another secret: the safe is behind the painting", encrypted=True)
    wrong = open_memory(settings=Settings(encryption_keys={"k1": K2}))
    with pytest.raises(EncryptionError, match="does not decrypt with key 'k1'"):
        wrong.get(x.id)
    other = open_memory(settings=keyed("k2"))
    with pytest.raises(EncryptionError, match="no encryption key 'k1'"):
        other.get(x.id)
    none = open_memory()
    with pytest.raises(EncryptionError, match="encrypted with key 'k1' and no encryption key"):
        none.get(x.id)
    with pytest.raises(EncryptionError, match="no encryption key is configured"):
        none.store("a new secret", encrypted=True)
    db = mem.engine.db
    with db.write() as conn:  # y's ciphertext moved into x's row: it does not open there
        token = conn.execute(sa.select(memories.c.content).where(memories.c.id == y.id)).scalar_one()
        conn.execute(memories.update().where(memories.c.id == x.id).values(content=token))
    with pytest.raises(EncryptionError, match=f"memory {x.id} does not decrypt"):
        mem.get(x.id)
    with db.write() as conn:  # truncated
        conn.execute(memories.update().where(memories.c.id == y.id).values(content=token[:30]))
    with pytest.raises(EncryptionError):
        mem.get(y.id)
    with pytest.raises(ConfigurationError, match="32"):
        KeyRing({"k1": b"short"})


def test_export_and_import_seal_again(open_memory: Callable[..., StellarMemory], tmp_path: Path) -> None:
    mem = open_memory(settings=keyed("k1"))
    mem.store(SECRET, encrypted=True, namespace="a")
    doc = mem.export(namespace="a")
    assert doc["memories"][0]["content"] == SECRET and doc["memories"][0]["encrypted"]
    other = open_memory(tmp_path / "other.db", settings=keyed("k2"))
    other.import_(doc, namespace="b")
    [copy] = other.memories(namespace="b")
    assert (copy.content, copy.encrypted, copy.key_id) == (SECRET, True, "k2")
    assert not [w for w in WORDS if w in everything(other)]


def test_strict_pads_lengths_and_keeps_no_search_words(open_memory: Callable[..., StellarMemory]) -> None:
    mem = open_memory(settings=keyed("k1").model_copy(update={"encryption_strict": True}))
    short = mem.store("PIN 4417", encrypted=True)
    long = mem.store("the passphrase for the backup vault is zanzibar-quokka-42", encrypted=True)
    with mem.engine.db.read() as conn:
        rows = dict(conn.execute(sa.select(memories.c.id, memories.c.content)).tuples().all())
        words = set(conn.execute(sa.select(memories.c.search_text)).scalars())
    assert len(rows[short.id]) == len(rows[long.id])  # both padded to 256 bytes
    assert words == {""}
    assert all(h.memory.id != long.id or "lexical" not in h.via for h in mem.recall("zanzibar"))
    assert mem.get(long.id).content.endswith("quokka-42")


def test_rotation_reseals_memories_and_their_change_events(
    open_memory: Callable[..., StellarMemory], tmp_path: Path
) -> None:
    old = open_memory(settings=keyed("k1"))
    ids = [
        x.id for x in old.store_many([{"content": f"{SECRET} #{i}", "encrypted": True} for i in range(30)])
    ]
    old.update(ids[0], content=SECRET + " (changed)")
    old.forget(ids[1])
    # the key file holds both keys, k2 primary: new writes use k2, rotation moves the rest
    key_file = tmp_path / "keys.json"
    crypto.write_key_file(key_file, "k2", {"k1": K1, "k2": K2})
    both = open_memory(settings=Settings(encryption_key_file=key_file))
    with pytest.raises(EncryptionError):  # k1 missing: a clear error, nothing changed
        open_memory(settings=keyed("k2")).security.rotate_keys()
    assert both.security.key_usage() == {"k1": 30}
    done = both.security.rotate_keys(batch=7)
    assert (done.primary, done.resealed, done.usage) == ("k2", 30, {"k2": 30})
    with both.engine.db.read() as conn:
        payloads = json.dumps([r for r in conn.execute(sa.select(changes.c.payload)).scalars()])
    assert '"k1"' not in payloads and "enc1:k1:" not in payloads
    both.security.retire_key("k1")
    assert crypto.read_key_file(key_file) == ("k2", {"k2": K2})
    only_new = open_memory(settings=Settings(encryption_key_file=key_file))
    assert only_new.get(ids[0]).content == SECRET + " (changed)"
    assert only_new.recall("zanzibar", k=3)
    with pytest.raises(ValidationError, match="primary"):
        only_new.security.retire_key("k2")


_ROTATE = """
import sys
from stellar_core import Settings, StellarMemory
from tests.fakes import HashEmbedder
mem = StellarMemory(sys.argv[1], settings=Settings(encryption_key_file=sys.argv[2]), embedder=HashEmbedder())
mem.security.rotate_keys(batch=1)
"""


@pytest.mark.sqlite_only
def test_a_rotation_killed_mid_way_resumes(open_memory: Callable[..., StellarMemory], tmp_path: Path) -> None:
    from tests.fakes import HashEmbedder

    path = tmp_path / "mem.db"
    mem = open_memory(path, settings=keyed("k1"), embedder=HashEmbedder())
    mem.store_many([{"content": f"{SECRET} #{i}", "encrypted": True} for i in range(400)])
    key_file = tmp_path / "keys.json"
    crypto.write_key_file(key_file, "k2", {"k1": K1, "k2": K2})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _ROTATE, str(path), str(key_file)], env=env)
    check = open_memory(path, settings=Settings(encryption_key_file=key_file), embedder=HashEmbedder())
    deadline = time.monotonic() + 120
    while check.security.key_usage().get("k2", 0) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = check.security.key_usage()
    assert partial.get("k1", 0) > 0, "the rotation finished before it could be killed"
    assert sum(partial.values()) == 400
    done = check.security.rotate_keys()
    assert done.usage == {"k2": 400}
    assert len({x.content for x in check.memories(limit=1000)}) == 400  # every one opens
