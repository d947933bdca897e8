"""Operations of several steps commit whole: a process killed in the middle of one leaves the
old state or the new one, never a mix. On both backends.

Each operation runs in a child process that stops itself at its first forget (after the new
memories were written, before the transaction commits) and is killed there with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellar_core import StellarMemory, consolidate, ingest_path, summarise

pytestmark = [pytest.mark.backends, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
import sqlalchemy as sa
from stellar_core import Settings, StellarMemory, consolidate, ingest_path, summarise

url, operation, argument, marker = sys.argv[1:]
mem = StellarMemory(url, settings=Settings(summary_min_chars=200, summary_max_chars=150), background=False)

def stop_at_the_first_forget(conn, cursor, statement, *rest):
    if statement.startswith("UPDATE memories SET") and "deleted_at=" in statement:
        open(marker, "w").close()
        time.sleep(600)  # killed here, inside the transaction

sa.event.listen(mem.engine.db.engine, "before_cursor_execute", stop_at_the_first_forget)
if operation == "ingest":
    ingest_path(mem, argument)
elif operation == "dedup":
    consolidate(mem, threshold=float(argument))
else:
    summarise(mem)
"""


def killed_midway(mem: StellarMemory, tmp_path: Path, operation: str, argument: str = "") -> None:
    marker = tmp_path / f"{operation}.reached"
    url = mem.engine.db.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, operation, argument, str(marker)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.communicate()[0]
        assert time.monotonic() < deadline, "the child never reached its first forget"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)


def live_contents(mem: StellarMemory) -> set[str]:
    return {x.content for x in mem.memories(limit=1000)}


def write_runbook(folder: Path, sections: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    text = "\n\n".join(f"## Part {i}\n\n{body}" for i, body in enumerate(sections))
    (folder / "runbook.md").write_text(f"# Runbook\n\n{text}\n")
    return folder


def test_reingesting_a_changed_document_is_all_or_nothing(open_memory, tmp_path: Path) -> None:
    mem = open_memory(tmp_path / "db.db", settings=_small_chunks())
    old = [f"Old step {i}: check the antenna bearing number {i} before the pass." for i in range(3)]
    docs = write_runbook(tmp_path / "docs", old)
    ingest_path(mem, docs)
    before = live_contents(mem)
    write_runbook(docs, ["New step: the bearing is replaced every spring now."])
    killed_midway(mem, tmp_path, "ingest", str(docs))
    assert live_contents(mem) == before  # the old version, whole
    assert ingest_path(mem, docs).replaced == len(before)  # and the next run replaces it whole
    assert all("New step" in c or c.startswith("# Runbook") for c in live_contents(mem))


def test_merging_near_duplicates_is_all_or_nothing(open_memory, tmp_path: Path) -> None:
    mem = open_memory(tmp_path / "db.db")
    copies = mem.store_many(
        ["The spare key for the ground station is in the red cabinet.",
         "The spare key for the ground station is in the red cabinet!",
         "the spare key for the ground station is in the red cabinet"]
    )  # fmt: skip
    killed_midway(mem, tmp_path, "dedup", "0.95")
    assert {x.id for x in mem.memories()} == {x.id for x in copies}  # none folded, none marked
    assert all("merged" not in x.metadata for x in mem.memories())
    assert consolidate(mem, threshold=0.95).merged == 2


def test_replacing_a_summary_is_all_or_nothing(open_memory, tmp_path: Path) -> None:
    settings = _small_chunks(summary_min_chars=200, summary_max_chars=150)
    mem = open_memory(tmp_path / "db.db", settings=settings)
    long = [
        f"Shift {i}: the operator checks telemetry, logs anomalies and hands over at noon." for i in range(4)
    ]
    docs = write_runbook(tmp_path / "docs", long)
    ingest_path(mem, docs)
    assert summarise(mem).created == 1
    summary = [x for x in mem.memories(limit=100) if x.source and x.source.type == "summary"]
    write_runbook(
        docs, [f"Shift {i}: the operator now also calibrates the receiver at dawn." for i in range(4)]
    )
    ingest_path(mem, docs)
    killed_midway(mem, tmp_path, "summarise")
    now = [x for x in mem.memories(limit=100) if x.source and x.source.type == "summary"]
    assert [x.id for x in now] == [x.id for x in summary]  # the old summary, alone
    result = summarise(mem)
    assert (result.created, result.replaced) == (1, 1)


def _small_chunks(**more: object):
    from stellar_core import Settings

    return Settings(chunk_max_chars=80, **more)  # type: ignore[arg-type]
