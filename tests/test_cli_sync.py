"""``stellar sync``: replicas on their own SQLite files, synced through a real Redis, the
command run in-process (``main``) and, for the foreground run, as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from stellar_core import StellarMemory
from tests import test_cli
from tests.services import Redis, free_port
from tests.test_cli import Stellar, count_file

if TYPE_CHECKING:
    from tests.conftest import MemoryFactory

stellar = test_cli.stellar  # the fixture: runs ``stellar ARGV...`` in-process


@pytest.fixture
def synced(redis_server: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sync on, through the session's Redis, on streams of this test only; their prefix."""
    prefix = f"cli-{tmp_path.name}"
    monkeypatch.setenv("STELLAR_SYNC_URL", redis_server.url())
    monkeypatch.setenv("STELLAR_SYNC_PREFIX", prefix)
    return prefix


@pytest.fixture
def replicas(synced: str, open_memory: MemoryFactory, tmp_path: Path) -> tuple[StellarMemory, StellarMemory]:
    """Two replicas (a.db, b.db), each an agent of its own."""
    return open_memory(tmp_path / "a.db", agent="ines"), open_memory(tmp_path / "b.db", agent="joao")


def test_run_once_carries_changes_to_the_other_replica(
    stellar: Stellar, replicas: tuple[StellarMemory, StellarMemory], tmp_path: Path
) -> None:
    a, _ = replicas
    rota = a.store("Ines owns the ground-station rota")
    a.store("HAL-4 flies on three wheels", namespace="fleet")
    a_db, b_db = str(tmp_path / "a.db"), str(tmp_path / "b.db")

    sent = stellar("--db", a_db, "sync", "run", "--once", "--json")
    assert sent.code == 0, sent.err
    assert sent.json()["publish"] == {"published": 2} and sent.json()["apply"]["applied"] == 0
    got = stellar("sync", "run", "--once", "--db", b_db)
    assert got.code == 0, got.err
    assert got.out.startswith("published 0 changes; applied 2 events in ")
    assert "Ines owns" in stellar("--db", b_db, "get", rota.id).out

    status = stellar("--db", b_db, "sync", "status", "--json").json()
    assert {s["namespace"] for s in status} == {"default", "fleet"}
    assert all(s["connected"] and s["lag_events"] == 0 and s["unpublished"] == 0 for s in status)
    human = stellar("--db", b_db, "sync", "status", "--namespace", "fleet")
    assert human.out.startswith("fleet: 1 in the stream, 0 to apply") and "0 open conflicts" in human.out
    only = stellar("--db", b_db, "sync", "run", "--once", "--namespace", "default", "--namespace", "fleet")
    assert only.code == 0, only.err
    bad = stellar("--db", b_db, "sync", "status", "--namespace", "no spaces")
    assert bad.code == 2 and bad.err.startswith("error: invalid namespace")


def test_conflicts_are_listed_and_resolved_by_hand(
    stellar: Stellar, replicas: tuple[StellarMemory, StellarMemory], tmp_path: Path
) -> None:
    a, b = replicas
    a_db, b_db = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    rota = a.store("Ines owns the ground-station rota")
    a.sync.publish()
    b.sync.pull()
    a.update(rota.id, content="Ines and Joao share the rota")  # neither has seen the other's edit
    b.update(rota.id, content="Joao owns the rota from May")
    for db in (a_db, b_db, a_db):
        assert stellar("--db", db, "sync", "run", "--once").code == 0

    (found,) = stellar("--db", b_db, "sync", "conflicts", "--json").json()
    assert found["memory_id"] == rota.id and found["fields"] == ["content"]
    versions = {found["winner"]["values"]["content"], found["loser"]["values"]["content"]}
    assert versions == {"Ines and Joao share the rota", "Joao owns the rota from May"}
    listed = stellar("--db", b_db, "sync", "conflicts").out
    assert listed.startswith(f"#{found['id']} memory {rota.id} (content)") and "loser " in listed
    incomplete = stellar("--db", b_db, "sync", "resolve", str(found["id"]))
    assert incomplete.code == 2 and "--keep or --content" in incomplete.err

    done = stellar("--db", b_db, "sync", "resolve", str(found["id"]), "--keep", "loser")
    assert done.code == 0, done.err
    assert done.out == f"resolved conflict {found['id']}: kept the loser of memory {rota.id}\n"
    assert b.get(rota.id).content == found["loser"]["values"]["content"]
    assert stellar("--db", b_db, "sync", "conflicts").out == "no open conflicts\n"
    for db in (b_db, a_db):  # the resolution is an edit like any other: every replica takes it
        assert stellar("--db", db, "sync", "run", "--once").code == 0
    assert a.get(rota.id).content == found["loser"]["values"]["content"]


def test_held_events_trim_and_bootstrap(
    stellar: Stellar,
    replicas: tuple[StellarMemory, StellarMemory],
    synced: str,
    redis_server: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = replicas
    a_db, b_db = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    a.store_many(["Ines owns the ground-station rota", "The backup window is 02:00-03:00 UTC"])
    a.sync.publish()
    redis.Redis.from_url(redis_server.url()).xadd(f"{synced}:default", {"e": b"not an event"})  # forged
    applied = stellar("--db", b_db, "sync", "run", "--once", "--json").json()["apply"]
    assert (applied["applied"], applied["refused"]) == (2, 1)
    (held,) = stellar("--db", b_db, "sync", "held", "--json").json()
    assert held["awaits"] is None and held["reason"]
    assert " refused: " in stellar("--db", b_db, "sync", "held").out  # kept for inspection, never applied

    assert stellar("--db", a_db, "sync", "run", "--once").code == 0  # both replicas have read it all
    monkeypatch.setenv("STELLAR_SYNC_RETENTION_HOURS", "1e-9")
    trimmed = stellar("--db", a_db, "sync", "trim", "--json").json()["trimmed"]
    assert trimmed > 0 and stellar("--db", a_db, "sync", "trim").out == "trimmed 0 stream entries\n"

    c_db = str(tmp_path / "c.db")  # a replica that starts late: from a snapshot
    made = stellar("--db", c_db, "sync", "bootstrap", "--from", a_db)
    assert made.code == 0, made.err
    assert made.out == "bootstrapped namespace default: 2 memories in the snapshot\n"
    assert stellar("--db", c_db, "stats", "--json").json()["memories"] == 2
    needs = stellar("--db", c_db, "sync", "bootstrap")
    assert needs.code == 2 and "--from" in needs.err


def test_without_redis_a_run_fails_with_the_reason_and_keeps_the_outbox(
    stellar: Stellar, open_memory: MemoryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "a.db")
    open_memory(tmp_path / "a.db").store("The antenna in Troll needs a new bearing")
    unset = stellar("--db", db, "sync", "run", "--once")
    assert unset.code == 2 and "STELLAR_SYNC_URL" in unset.err and unset.out == ""
    monkeypatch.setenv("STELLAR_SYNC_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    down = stellar("--db", db, "sync", "run", "--once")
    assert down.code == 2 and "does not answer" in down.err
    (status,) = stellar("--db", db, "sync", "status", "--json").json()
    assert (status["connected"], status["unpublished"]) == (False, 1)
    assert "not connected" in stellar("--db", db, "sync", "status").out


@pytest.mark.slow
def test_run_syncs_in_the_foreground_until_terminated(
    replicas: tuple[StellarMemory, StellarMemory], tmp_path: Path
) -> None:
    a, b = replicas
    proc = subprocess.Popen(
        [sys.executable, "-m", "stellar_core.cli", "--db", str(tmp_path / "b.db"), "sync", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        a.store("Ines owns the ground-station rota")
        a.sync.publish()
        mine = b.store("Joao owns the rota from May")  # written by another process: published too
        deadline, arrived = time.monotonic() + 120, 0
        while not count_file(str(tmp_path / "b.db"), "Ines owns the ground-station rota") or not arrived:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            arrived += a.sync.pull().applied
            time.sleep(0.2)
        assert a.get(mine.id).content == "Joao owns the rota from May"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "syncing; Ctrl-C stops" in err and out == "sync stopped\n"
