"""Sync with real processes: three agents with their own SQLite replicas and a PostgreSQL hub
writing at once, then converging; a sync worker killed with SIGKILL mid-batch, then restarted:
nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa

from stellar_core import Settings, StellarMemory
from stellar_core.embeddings import Embedder
from tests.conftest import TEMPLATE
from tests.services import Postgres, Redis
from tests.sync_agent import NS, act, canonical, digest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.sync_agent", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def groups_idle(url: str, expected: int) -> bool:
    """Every replica's group has read and acknowledged everything on the stream."""
    try:
        found = redis_lib.Redis.from_url(url).xinfo_groups(f"stellar:sync:{NS}")
    except redis_lib.ResponseError:
        return False
    return len(found) >= expected and all(g["lag"] == 0 and g["pending"] == 0 for g in found)


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_three_agents_and_a_postgresql_hub_writing_at_once_converge(
    tmp_path: Path, postgres: Postgres, redis_server: Redis, embedder: Embedder
) -> None:
    url = redis_server.url(5)
    redis_lib.Redis.from_url(url).flushdb()
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql('DROP DATABASE IF EXISTS "sync_hub" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "sync_hub" TEMPLATE {TEMPLATE}')
    admin.dispose()
    s = Settings(sync_url=url, sync_background=True, stats_flush_seconds=0.2)
    hub = StellarMemory(postgres.url("sync_hub"), agent="hub", settings=s, embedder=embedder)
    agents = {
        f"agent-{i}": spawn(str(tmp_path / f"agent-{i}"), f"agent-{i}", url, str(i), "60") for i in range(3)
    }
    try:
        import random

        rng = random.Random(99)
        for n in range(30):  # the hub's own agent writes meanwhile
            act(hub, rng, "hub", n)
            time.sleep(0.02)
        for name, proc in agents.items():
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "done", name
        wait_until(lambda: groups_idle(url, 4), 120, "every replica to apply everything")
        for proc in agents.values():
            proc.send_signal(signal.SIGTERM)  # closing publishes what is left
            assert proc.wait(timeout=60) == 0
        hub.close()
        # Each replica opened again applies what arrived after it stopped, and all agree.
        quiet = Settings(sync_url=url)
        mems = [StellarMemory(postgres.url("sync_hub"), agent="hub", settings=quiet, embedder=embedder)]
        mems += [
            StellarMemory(tmp_path / name, agent=name, settings=quiet, embedder=embedder) for name in agents
        ]
        for mem in mems:
            while mem.sync.pull([NS]).received:
                pass
        states = [canonical(m) for m in mems]
        assert len(states[0]["memories"]) > 30
        assert len({digest(x) for x in states}) == 1
        assert sum(x["recalls"] for x in states[0]["memories"]) > 0
        for mem in mems:
            assert [h for h in mem.sync.held(NS) if h["awaits"]] == []
            mem.close()
    finally:
        for proc in agents.values():
            if proc.poll() is None:
                proc.kill()


def test_a_sync_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, redis_server: Redis, embedder: Embedder
) -> None:
    url = redis_server.url(6)
    r = redis_lib.Redis.from_url(url)
    r.flushdb()
    # Without vectors in the events the worker embeds each batch: slow enough to be killed in one.
    a = StellarMemory(tmp_path / "a", agent="agent-a", settings=Settings(sync_url=url, sync_vectors=False),
                      embedder=embedder, background=False)  # fmt: skip
    made = a.store_many([f"observation {i}: the pump ran {i % 7} hours" for i in range(600)], namespace=NS)
    for _ in range(2):
        for x in made[:100]:
            a.recall(x.content, k=1, namespace=NS)
        a.flush()
    worker = spawn("consume", str(tmp_path / "b"), url)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        while a.sync.publish():
            pass
        group = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it holding a batch it read and has not acknowledged
            found = r.xinfo_groups(f"stellar:sync:{NS}")
            group = next((g for g in found if g["entries-read"] and g["entries-read"] > 100), None)
            if group is not None and group["pending"] > 0:
                break
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert group is not None and group["pending"] > 0
    finally:
        if worker.poll() is None:
            worker.kill()
    s = Settings(sync_url=url, sync_claim_idle_seconds=0.5)
    b = StellarMemory(tmp_path / "b", agent="consumer", settings=s, embedder=embedder, background=False)
    time.sleep(0.6)  # the dead consumer's entries are idle long enough to be taken over
    while b.sync.pull([NS]).received:
        pass
    assert b.sync.status(NS)[0].lag_events == 0
    assert digest(canonical(b)) == digest(canonical(a))  # recall counts too: none counted twice
    with b.engine.snapshot() as conn:
        applied = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT origin) FROM changes WHERE origin IS NOT NULL")
        )
        total, distinct = applied.one()
    assert total == distinct == r.xlen(f"stellar:sync:{NS}")
    a.close()
    b.close()
