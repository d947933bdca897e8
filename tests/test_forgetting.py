"""Forgetting that forgets, on both backends (decision 0029): once a forgotten memory is purged,
its words are nowhere: not in the database's bytes (SQLite: the file and its write-ahead log;
PostgreSQL: every table, the full-text rows and term statistics included), not in the change
log's payloads, not in Redis, not in a summary made from it, not in a merge history.

Each search is run before the purge too, so it is shown to find the words where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import redis
import sqlalchemy as sa

from stellar_core import NotFoundError, Settings, StellarMemory
from stellar_core.dedup import consolidate
from stellar_core.store import pgtext
from stellar_core.store.schema import changes
from stellar_core.summaries import summarise
from tests.fakes import HashEmbedder
from tests.services import Redis

pytestmark = pytest.mark.backends

SECRET = "The vault code is 44170925 and the passphrase is zanzibar-quokka."
# The update drops the code: it then lives only in the first version's traces.
UPDATED = "Passphrase: zanzibar-quokka. The vault code changed last week."
TWIN = "Vault code 44170925, passphrase zanzibar-quokka"  # merged into SURVIVOR by dedup
SURVIVOR = "The vault lives in room 4 of the annex"
WORDS = (b"44170925", b"zanzibar", b"quokka")  # long or odd enough never to turn up by chance


class TwinEmbedder(HashEmbedder):
    """Hash vectors, except that TWIN gets SURVIVOR's: the two are near-duplicates."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return super().embed([SURVIVOR if t == TWIN else t for t in texts])


class FirstSentence:
    """A summariser that keeps the first sentence (the secret's passphrase)."""

    name = "first-sentence"

    def summarize(self, text: str, max_chars: int) -> str:
        return text.split(". ")[0][:max_chars]


@pytest.fixture
def cache(redis_server: Redis) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url(7))  # a database of this module's own
    client.flushdb()
    return client


def found(data: bytes) -> set[bytes]:
    return {w for w in WORDS if w in data.lower()}


def in_database(mem: StellarMemory) -> set[bytes]:
    """The secret's words in the database: SQLite's file and log, bytes as they are on disk;
    PostgreSQL's every row of every table, as text."""
    db = mem.engine.db
    if db.dialect.name == "sqlite":
        path = Path(str(db.url.database))
        return found(b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()))
    with db.read() as conn:
        tables = sa.inspect(conn).get_table_names()
        rows = [r for t in tables for r in conn.exec_driver_sql(f'SELECT t::text FROM "{t}" t').scalars()]
    return found("\n".join(rows).encode())


def in_redis(cache: redis.Redis) -> set[bytes]:
    values = []
    for key in cache.scan_iter():
        kind = cache.type(key)
        values += [key, *(cache.smembers(key) if kind == b"set" else [cache.get(key) or b""])]
    return found(b"\n".join(values))


def test_a_purged_memory_leaves_no_trace(open_memory, redis_server: Redis, cache: redis.Redis, clock) -> None:
    mem = open_memory(embedder=TwinEmbedder(), settings=Settings(redis_url=redis_server.url(7)))
    question, secret, reply = mem.store_many(
        [{"content": c, "thread": "ops"} for c in ("Where is the vault code kept?", SECRET, "Thanks, noted.")]
    )
    control = mem.store("Ines owns the ground-station rota", importance=0.6)
    survivor = mem.store(SURVIVOR, importance=0.9)
    twin = mem.store(TWIN)
    secret = mem.update(secret.id, content=UPDATED, tags=["vault"])
    mem.link(secret.id, control.id, kind="related")
    assert consolidate(mem).merged == 1  # the twin folded into the survivor, and forgotten
    result = summarise(mem, summarizer=FirstSentence(), min_chars=len(UPDATED), max_chars=50)
    assert result.created == 1  # of the secret: every other memory is shorter
    summary = next(h.memory for h in mem.recall("passphrase", k=5, source_type="summary"))
    assert summary.content == "Passphrase: zanzibar-quokka"
    assert mem.get(secret.id).content == UPDATED  # now in Redis too (a hot memory)

    mem.engine._upkeep.run_once()  # what the background thread does: the log folded in
    assert in_database(mem) == set(WORDS)
    assert in_redis(cache) == {b"zanzibar", b"quokka"}

    mem.forget(secret.id)
    clock.advance(days=mem.settings.purge_after_days + 1)
    assert mem.forget_idle().purged == 3  # the secret, the twin and the summary made from it
    for gone in (secret, twin, summary):
        with pytest.raises(NotFoundError):
            mem.get(gone.id)

    mem.engine._upkeep.run_once()  # after a purge, the write-ahead log is emptied as well
    assert in_database(mem) == set()
    assert in_redis(cache) == set()

    # Everything else is as it was.
    for x in (question, reply, control):
        assert mem.get(x.id).content == x.content
    kept = mem.get(survivor.id)
    assert kept.content == SURVIVOR and [e["id"] for e in kept.metadata["merged"]] == [twin.id]
    assert mem.recall("ground-station rota", k=1)[0].memory.id == control.id
    assert not any(found(h.memory.content.encode()) for h in mem.recall("zanzibar quokka passphrase"))

    mem.close()  # and on SQLite, the files once closed
    assert in_database(mem) == set()


def test_purged_events_stay_in_the_log_without_their_content(open_memory, clock) -> None:
    mem = open_memory(embedder=HashEmbedder())
    other = mem.store("Ines owns the ground-station rota")
    secret = mem.store(SECRET, tags=["vault"], metadata={"room": 4}, source={"type": "note", "url": "n"})
    mem.update(secret.id, content=UPDATED)
    mem.link(secret.id, other.id)
    mem.forget(secret.id)
    clock.advance(days=mem.settings.purge_after_days + 1)
    assert mem.reorbit().purged == 1

    c = changes.c
    with mem.engine.db.read() as conn:
        log = conn.execute(sa.select(c.memory_id, c.op, c.payload, c.hlc).order_by(c.seq)).all()
    theirs = [(op, payload) for memory_id, op, payload, _ in log if memory_id == secret.id]
    assert [op for op, _ in theirs] == ["store", "update", "link", "forget", "purge"]
    assert [payload for _, payload in theirs] == [{"scrubbed": True}] * 4 + [{}]
    assert all(hlc for *_, hlc in log)  # stamps and order as they were
    (stored,) = [p for memory_id, op, p, _ in log if memory_id == other.id]
    assert stored["content"] == other.content  # another memory's events keep their payloads
    assert [e.op.value for e in mem.events(limit=10)][:2] == ["purge", "forget"]


@pytest.mark.postgres_only
def test_a_forgotten_memory_leaves_the_common_terms_lists(open_memory) -> None:
    mem = open_memory(embedder=HashEmbedder())
    mem.engine.db.dialect.text_tuning = pgtext.Tuning(list_size=2)
    stored = mem.store_many([f"note {i}:" + " kumquat" * (i + 1) for i in range(6)])
    mem.warm()  # builds the lists: "kumquat" is in more memories than a list holds
    listed = sa.text(
        "SELECT m.id FROM text_top t JOIN memories m USING (seq) WHERE t.lexeme = 'kumquat' ORDER BY m.id"
    )
    with mem.engine.db.read() as conn:
        assert stored[-1].id in conn.execute(listed).scalars().all()
    mem.forget(stored[-1].id)
    with mem.engine.db.read() as conn:
        assert stored[-1].id not in conn.execute(listed).scalars().all()
