"""The Redis read-through cache on a real redis-server: hits, invalidation by any process,
no stampede, and memory that keeps working while Redis is away."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellar_core import NotFoundError, Settings, StellarMemory, Zone
from tests.fakes import HashEmbedder
from tests.services import Redis


def _settings(redis: Redis, **kw: object) -> Settings:
    return Settings(redis_url=redis.url(), **kw)  # type: ignore[arg-type]


def _reads(mem: StellarMemory) -> list[str]:
    """Database statements that read a whole memory by id (not its version), from now on."""
    seen: list[str] = []

    def _seen(_conn: object, _cur: object, statement: str, *_: object) -> None:
        whole = "memories.content" in statement and "memories.id =" in statement
        if statement.startswith("SELECT") and whole:
            seen.append(statement)

    sa.event.listen(mem.engine.db.engine, "before_cursor_execute", _seen)
    return seen


@pytest.fixture
def cached(open_memory, redis_server: Redis):
    """Memories with the Redis cache, on a database file of their own."""
    redis_server_flush(redis_server)

    def _open(path: Path | None = None, **kw: object) -> StellarMemory:
        return open_memory(path, embedder=HashEmbedder(), settings=_settings(redis_server, **kw))

    return _open


def redis_server_flush(server: Redis) -> None:
    import redis

    redis.Redis.from_url(server.url()).flushdb()


def test_a_hot_memory_is_read_from_redis_after_the_first_get(cached) -> None:
    mem = cached()
    x = mem.store("the antenna is parked at 45 degrees", importance=0.9)
    assert x.zone in (Zone.CORE, Zone.INNER)
    reads = _reads(mem)
    assert mem.get(x.id) == x
    assert len(reads) == 1
    assert mem.get(x.id) == x
    assert len(reads) == 1  # the second came from Redis


def test_only_the_hot_zones_are_cached(cached) -> None:
    mem = cached(cache_zones=["core"])
    x = mem.store("an inner memory, not in the cached zones", importance=0.9)
    assert x.zone is Zone.INNER
    reads = _reads(mem)
    mem.get(x.id)
    started = time.perf_counter()
    mem.get(x.id)
    assert len(reads) == 2
    assert time.perf_counter() - started < 0.2  # nobody waits for a fill that will not come


def test_a_missing_memory_holds_up_no_reader(cached) -> None:
    mem = cached()
    for _ in range(2):
        started = time.perf_counter()
        with pytest.raises(NotFoundError):
            mem.get("0" * 32)
        assert time.perf_counter() - started < 0.2


def _update_elsewhere(db: str, redis_url: str, memory_id: str) -> None:
    with StellarMemory(
        db, embedder=HashEmbedder(), settings=Settings(redis_url=redis_url), background=False
    ) as other:
        other.update(memory_id, content="the antenna is parked at 90 degrees", importance=0.95)


def test_a_write_by_another_process_is_never_served_stale(cached, redis_server: Redis, tmp_path) -> None:
    db = tmp_path / "shared.db"
    mem = cached(db)
    x = mem.store("the antenna is parked at 45 degrees", importance=0.9)
    mem.get(x.id)  # now cached
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_update_elsewhere, args=(str(db), redis_server.url(), x.id))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    fresh = mem.get(x.id)
    assert fresh.content == "the antenna is parked at 90 degrees" and fresh.importance == 0.95


def test_reorbit_and_recall_statistics_invalidate(cached, clock) -> None:
    mem = cached()
    x = mem.store("the ground station key is in the red cabinet", importance=0.9)
    mem.get(x.id)
    mem.recall("where is the ground station key?", k=1)
    mem.flush()  # recall statistics written: the cached copy is stale
    assert mem.get(x.id).recall_count == 1
    clock.advance(days=400)
    mem.reorbit()
    assert mem.get(x.id).zone is not x.zone  # drifted out; not the cached inner copy


def test_many_readers_missing_at_once_query_the_database_once(cached) -> None:
    mem = cached()
    x = mem.store("a memory every agent wants at the same moment", importance=0.9)
    reads = _reads(mem)
    barrier = threading.Barrier(16)
    got: list[str] = []

    def reader() -> None:
        barrier.wait()
        got.append(mem.get(x.id).content)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [x.content] * 16
    assert len(reads) == 1


def test_memory_works_while_redis_is_away_and_misses_nothing_after(open_memory, clock, tmp_path, caplog):
    server = Redis(tmp_path / "redis")
    server.start()
    try:
        mem = open_memory(embedder=HashEmbedder(), settings=Settings(redis_url=server.url()))
        x = mem.store("the spare key is with Ines", importance=0.9)
        mem.get(x.id)  # cached
        assert server._proc is not None
        os.kill(server._proc.pid, signal.SIGSTOP)  # Redis hangs, keeping its data
        with caplog.at_level(logging.WARNING, logger="stellar_core.store.cache"):
            mem.update(x.id, content="the spare key is with Tomas")  # its invalidation is missed
            assert mem.get(x.id).content == "the spare key is with Tomas"
            y = mem.store("stored while Redis is away", importance=0.9)
            assert mem.recall("spare key", k=2)
            assert mem.get(y.id).content == y.content
        assert len([r for r in caplog.records if "unavailable" in r.message]) == 1  # logged once
        os.kill(server._proc.pid, signal.SIGCONT)  # back, with the stale copy still inside
        clock.advance(seconds=1.1)  # past the retry interval: Redis is asked again
        reads = _reads(mem)
        assert mem.get(x.id).content == "the spare key is with Tomas"
        assert mem.get(x.id).content == "the spare key is with Tomas"
        assert len(reads) == 1  # the cache is in use again
    finally:
        if server._proc is not None:
            os.kill(server._proc.pid, signal.SIGCONT)
        server.stop()
