"""The ``stellar`` command, run for real: in-process through ``main`` and as a subprocess.

Every command that embeds (store, recall, import, reorbit --context) loads the real model in
its own ``StellarMemory``, as the command does; tests share a seeded database file (copied per
test) so that most of them embed once or not at all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stellar_core import StellarMemory
from stellar_core.cli import COMMANDS, main
from stellar_core.embeddings import Embedder

SEED = {
    "backup": "The backup window is 02:00-03:00 UTC; never deploy during it",
    "rota": "Ines owns the ground-station rota since March",
    "coffee": "The coffee machine on floor 3 needs descaling every Friday",
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Stellar = Callable[..., Result]


@pytest.fixture
def stellar(capsys: pytest.CaptureFixture[str]) -> Stellar:
    """Runs ``stellar ARGV...`` in-process and returns exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> tuple[Path, dict[str, str]]:
    """A database holding SEED (ids by key), stored once through the facade."""
    path = tmp_path_factory.mktemp("seed") / "seed.db"
    with StellarMemory(path, embedder=embedder, background=False) as mem:
        stored = mem.store_many(
            [
                {"content": SEED["backup"], "importance": 1.0, "tags": ["ops"]},
                {"content": SEED["rota"], "importance": 0.6, "tags": ["people"], "thread": "standup"},
                {"content": SEED["coffee"], "importance": 0.0, "tags": ["office"]},
            ]
        )
        assert [m.zone.value for m in stored] == ["core", "inner", "outer"]
    return path, dict(zip(SEED, (m.id for m in stored), strict=True))


@pytest.fixture
def db(tmp_path: Path, seeded: tuple[Path, dict[str, str]]) -> str:
    """A fresh copy of the seeded database for one test."""
    copy = tmp_path / "mem.db"
    shutil.copy(seeded[0], copy)
    return str(copy)


@pytest.fixture
def ids(seeded: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return seeded[1]


def count(stellar: Stellar, db: str, *options: str) -> int:
    result = stellar("stats", "--db", db, "--json", *options)
    assert result.code == 0, result.err
    return int(result.json()["memories"])


# --- store -----------------------------------------------------------------------------------
def test_store_human(stellar: Stellar, db: str) -> None:
    result = stellar("--db", db, "store", "Deploys need two approvals")
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("stored ")
    assert "(zone inner, score 0.55)" in result.out
    memory_id = result.out.split()[1]
    got = stellar("--db", db, "get", memory_id, "--json")
    assert got.json()["content"] == "Deploys need two approvals"


def test_store_json_with_every_option(stellar: Stellar, db: str) -> None:
    result = stellar(
        "store",
        "Rotate the TLS certificates in May",
        "--db",
        db,
        "--json",
        "--importance",
        "0.9",
        "--pin",
        "--tag",
        "ops",
        "--tag",
        "security",
        "--thread",
        "plan-7",
        "--meta",
        "owner=ines",
        "--meta",
        "ticket=42",
        "--agent",
        "planner-1",
    )
    assert result.code == 0, result.err
    stored = result.json()
    assert stored["content"] == "Rotate the TLS certificates in May"
    assert stored["importance"] == 0.9 and stored["pinned"] is True
    assert stored["tags"] == ["ops", "security"]
    assert stored["metadata"] == {"owner": "ines", "ticket": "42"}  # values stay strings
    assert stored["thread"] == "plan-7" and stored["position"] == 0
    assert stored["origin_agent"] == "planner-1"
    assert stellar("get", stored["id"], "--db", db, "--json").json() == stored


def test_store_from_stdin(
    stellar: Stellar, db: str, monkeypatch: pytest.MonkeyPatch, ids: dict[str, str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SEED["rota"] + "\n"))
    result = stellar("--db", db, "--json", "store", "-", "--thread", "standup")
    assert result.code == 0, result.err
    # the trailing newline is dropped: identical content in the thread is the same memory
    assert result.json()["id"] == ids["rota"]
    assert count(stellar, db) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--db", "{db}", "--namespace", "team-a", "stats"],
        ["stats", "--json", "--db", "{db}", "--namespace", "team-a"],
        ["--db", "{db}", "stats", "--namespace", "team-a", "--json"],
        ["--namespace", "team-a", "--json", "stats", "--db", "{db}"],
    ],
)
def test_global_options_before_or_after_the_subcommand(stellar: Stellar, db: str, argv: list[str]) -> None:
    result = stellar(*(a.format(db=db) for a in argv))
    assert result.code == 0, result.err
    assert result.json()["namespace"] == "team-a"


def test_default_database_is_in_the_settings_data_directory(
    stellar: Stellar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_NAMESPACE", "from-settings")
    assert stellar("store", "kept in the default place").code == 0
    assert (tmp_path / "home" / "stellar.db").is_file()
    result = stellar("stats", "--json")
    assert result.code == 0, result.err
    assert result.json()["namespace"] == "from-settings" and result.json()["memories"] == 1


# --- recall ----------------------------------------------------------------------------------
def test_recall_json(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    result = stellar("recall", "when do backups run?", "--db", db, "--json", "-k", "2")
    assert result.code == 0, result.err
    hits = result.json()
    assert len(hits) == 2
    assert hits[0]["id"] == ids["backup"]
    assert hits[0]["content"] == SEED["backup"]
    assert hits[0]["zone"] == "core"
    assert hits[0]["relevance"] >= hits[1]["relevance"] > 0
    assert set(hits[0]["via"]) <= {"lexical", "vector", "thread", "graph"} and hits[0]["via"]
    assert isinstance(hits[0]["score"], float)


def test_recall_human_is_numbered_with_origin_and_snippet(
    stellar: Stellar, db: str, ids: dict[str, str], tmp_path: Path
) -> None:
    stellar("--db", db, "store", "Backups: " + "very long line of backup notes " * 20)
    result = stellar("--db", db, "recall", "who owns the rota?", "-k", "3")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 6  # a line with the hit, a line with its snippet
    assert lines[0].startswith(" 1. ") and lines[4].startswith(" 3. ")
    assert "inner" in lines[0] and "standup #0" in lines[0] and ids["rota"] in lines[0]  # its thread
    assert lines[1].strip() == SEED["rota"]
    assert all(len(line) < 140 for line in lines)  # the long memory is shortened to one line

    runbook = "# Runbook\n\nIntro.\n\n## Backups\n\nBackups run at 02:00 UTC nightly.\n"
    (tmp_path / "runbook.md").write_text(runbook)
    assert stellar("--db", db, "ingest", str(tmp_path / "runbook.md")).code == 0
    found = stellar("--db", db, "recall", "when do backups run nightly?", "-k", "1", "--json").json()[0]
    assert found["origin"].startswith("runbook.md #") and "02:00 UTC nightly" in found["snippet"]


def test_recall_filters_by_zone_and_tag(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    by_zone = stellar("--db", db, "--json", "recall", "rota", "--zone", "core", "--zone", "outer")
    assert {h["id"] for h in by_zone.json()} == {ids["backup"], ids["coffee"]}
    by_tag = stellar("--db", db, "--json", "recall", "backup", "--tag", "office")
    assert [h["id"] for h in by_tag.json()] == [ids["coffee"]]


def test_namespaces_are_isolated(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    stored = stellar("--db", db, "--namespace", "team-b", "--json", "store", "Team B meets Tue")
    assert stored.code == 0, stored.err
    hits = stellar("--db", db, "--json", "recall", "when does team B meet?", "-k", "10").json()
    assert stored.json()["id"] not in {h["id"] for h in hits}
    assert count(stellar, db, "--namespace", "team-b") == 1
    assert count(stellar, db) == 3
    empty = stellar("--db", db, "--namespace", "team-c", "recall", "backup window")
    assert (empty.code, empty.out) == (0, "no matching memories\n")
    missing = stellar("--db", db, "--namespace", "team-b", "get", ids["backup"])
    assert missing.code == 2 and "team-b" in missing.err


# --- get, forget, stats, reorbit -------------------------------------------------------------
def test_get_human(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    result = stellar("--db", db, "get", ids["rota"])
    assert result.code == 0, result.err
    assert f"id         {ids['rota']}" in result.out
    assert "zone       inner" in result.out
    assert "tags       people" in result.out and "thread     standup #0" in result.out
    assert result.out.rstrip().endswith(SEED["rota"])


def test_forget_human_and_json(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    human = stellar("--db", db, "forget", ids["coffee"])
    assert (human.code, human.out) == (0, f"forgot {ids['coffee']}\n")
    machine = stellar("--db", db, "--json", "forget", ids["rota"])
    assert machine.code == 0 and machine.json()["deleted_at"] is not None
    stats = stellar("--db", db, "--json", "stats").json()
    assert (stats["memories"], stats["forgotten"]) == (1, 2)
    gone = stellar("--db", db, "forget", ids["rota"])
    assert gone.code == 2 and gone.out == "" and "no memory" in gone.err


def test_stats_human_and_json(stellar: Stellar, db: str) -> None:
    human = stellar("--db", db, "stats")
    assert human.code == 0
    assert human.out.startswith("namespace default: 3 memories, 0 forgotten, 0 links, 1 threads")
    assert "core 1  inner 1  outer 1  belt 0  cloud 0" in human.out
    machine = stellar("--db", db, "stats", "--json").json()
    assert machine["zones"] == {"core": 1, "inner": 1, "outer": 1, "belt": 0, "cloud": 0}
    assert 0 < machine["mean_score"] < 1


def test_reorbit_human_and_json(stellar: Stellar, db: str) -> None:
    human = stellar("--db", db, "reorbit")
    assert human.code == 0, human.err
    assert human.out.startswith("reorbit default: scored 3, ")
    machine = stellar("--db", db, "--json", "reorbit", "--context", "backups and deploys")
    assert machine.code == 0, machine.err
    report = machine.json()
    assert report["scored"] == 3 and report["namespace"] == "default"
    assert sum(report["zones"].values()) == 3
    assert {"moved_inward", "moved_outward", "forgotten", "purged", "seconds"} <= set(report)


# --- export and import -----------------------------------------------------------------------
def test_export_to_file_and_import_into_another_database(stellar: Stellar, db: str, tmp_path: Path) -> None:
    exported = tmp_path / "notes.json"
    human = stellar("--db", db, "export", str(exported))
    assert human.out == f"exported 3 memories and 0 links of namespace default to {exported}\n"
    document = json.loads(exported.read_text())
    assert document["format"] == "stellar-memory-export" and len(document["memories"]) == 3

    copy = str(tmp_path / "copy.db")
    imported = stellar("--db", copy, "import", str(exported))
    assert imported.code == 0, imported.err
    assert imported.out == "imported 3 memories into namespace default (0 skipped, 0 links)\n"
    again = stellar("import", str(exported), "--db", copy, "--json")
    assert again.json() == {"namespace": "default", "imported": 0, "skipped": 3, "links": 0}

    stdout = stellar("--db", copy, "export")
    assert stdout.code == 0
    assert json.loads(stdout.out)["memories"] == document["memories"]
    hits = stellar("--db", copy, "--json", "recall", "descaling the coffee machine", "-k", "1")
    assert hits.json()[0]["content"] == SEED["coffee"]


def test_import_into_a_namespace_from_stdin(
    stellar: Stellar, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = stellar("--db", db, "export", "--json").out
    monkeypatch.setattr(sys, "stdin", io.StringIO(document))
    copy = str(tmp_path / "copy.db")
    result = stellar("--db", copy, "--namespace", "archive", "--json", "import", "-")
    assert result.code == 0, result.err
    assert result.json()["namespace"] == "archive" and result.json()["imported"] == 3
    assert count(stellar, copy, "--namespace", "archive") == 3
    assert count(stellar, copy) == 0


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["store", "   "], "content is empty"),
        (["store", "x", "--importance", "2"], "importance must be a finite number in 0..1, not 2.0"),
        (["get", "no-such-id"], "no memory 'no-such-id' in namespace 'default'"),
        (["forget", "no-such-id"], "no memory 'no-such-id'"),
        (["--namespace", "bad namespace", "stats"], "invalid namespace"),
        (["recall", "x", "-k", "0"], "k must be a whole number"),
        (["import", "{tmp}/missing.json"], "missing.json: No such file or directory"),
        (["import", "{tmp}/broken.json"], "broken.json is not valid JSON"),
        (["import", "{tmp}/other.json"], "not a Stellar Memory export"),
        (["import", "{tmp}/deep.json"], "deep.json is nested too deeply"),
        (["export", "{tmp}/no-dir/out.json"], "No such file or directory"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_changes_nothing(
    stellar: Stellar, db: str, tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "broken.json").write_text('{"format": "stellar-memory-export", ')
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    before = stellar("--db", db, "export", "--json").out
    result = stellar("--db", db, *(a.format(tmp=tmp_path) for a in argv))
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("error: ") and message in result.err
    assert len(result.err.splitlines()) == 1
    assert stellar("--db", db, "export", "--json").out == before


def test_a_file_that_is_not_a_database_is_left_alone(stellar: Stellar, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes\n")
    result = stellar("--db", str(notes), "stats")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("error: cannot open ")
    assert "not a Stellar Memory database" in result.err
    assert notes.read_text() == "my precious notes\n"


def test_usage_errors_and_help(stellar: Stellar, db: str) -> None:
    bad_meta = stellar("--db", db, "store", "x", "--meta", "novalue")
    assert bad_meta.code == 2 and "expected KEY=VALUE" in bad_meta.err
    assert stellar("--db", db, "recall", "x", "--zone", "mars").code == 2
    assert stellar().code == 2  # a command is required
    helped = stellar("--help")
    assert helped.code == 0
    for name in COMMANDS:  # every command is listed, with a description
        assert any(line.split()[:1] == [name] and len(line.split()) > 1 for line in helped.out.splitlines())


# --- the installed command, end to end -------------------------------------------------------
def test_end_to_end_as_a_subprocess(tmp_path: Path) -> None:
    db = str(tmp_path / "e2e.db")
    script = Path(sys.executable).with_name("stellar")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "stellar_core.cli"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *argv],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "STELLAR_HOME": str(tmp_path / "home")},
        )

    stored = run("store", "Staging is rebuilt every Sunday night", "--json", "--db", db)
    assert stored.returncode == 0, stored.stderr
    memory_id = json.loads(stored.stdout)["id"]

    hits = run("--db", db, "--json", "recall", "when is staging rebuilt?")
    assert hits.returncode == 0, hits.stderr
    assert json.loads(hits.stdout)[0]["id"] == memory_id

    got = run("--db", db, "get", memory_id)
    assert got.returncode == 0 and "Staging is rebuilt" in got.stdout
    forgot = run("--db", db, "forget", memory_id)
    assert forgot.returncode == 0 and memory_id in forgot.stdout

    gone = run("--db", db, "get", memory_id)
    assert gone.returncode == 2 and gone.stdout == ""
    assert gone.stderr.startswith(f"error: no memory '{memory_id}'")


def test_runs_as_python_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stellar_core.cli", "--db", str(tmp_path / "m.db"), "store", "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stored ")


@pytest.mark.parametrize("command", [["stats"], ["recall", "x"], ["get", "abc"], ["forget", "abc"],
                                     ["reorbit"], ["export"]])  # fmt: skip
def test_read_commands_need_a_database_that_exists(stellar: Stellar, tmp_path: Path, command) -> None:
    """A mistyped --db is an error, not a new empty database answering 'no matching memories'."""
    (tmp_path / "dangling.db").symlink_to(tmp_path / "gone" / "target.db")
    for where in ("typo.db", "no-such-dir", "dangling.db"):
        result = stellar("--db", str(tmp_path / where), *command)
        assert result.code == 2 and result.out == "", result
        assert result.err.startswith("error: ") and str(tmp_path / where) in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.db"]  # nothing was created


def test_a_broken_symbolic_link_is_not_followed_to_create_a_database(stellar: Stellar, tmp_path) -> None:
    (tmp_path / "notes.db").symlink_to(tmp_path / "elsewhere" / "notes.db")
    result = stellar("--db", str(tmp_path / "notes.db"), "store", "a fact")
    assert result.code == 2 and "broken symbolic link" in result.err
    assert not (tmp_path / "elsewhere").exists()


def test_commands_that_do_not_embed_do_not_load_the_model(db: str, ids: dict[str, str]) -> None:
    """stats, get and forget answer without torch (seconds of start-up on a small machine)."""
    probe = (
        "import sys; from stellar_core.cli import main; "
        f"codes = [main(['--db', {db!r}, *a.split()]) for a in sys.argv[1:]]; "
        "print(codes, 'torch' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, "stats", f"get {ids['rota']}", f"forget {ids['coffee']}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[0, 0, 0] False"


# --- the other verbs ---------------------------------------------------------------------------
def test_update_link_links_thread_list_events(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    rota, backup = ids["rota"], ids["backup"]
    out = stellar(
        "--db", db, "update", rota, "--importance", "0.9", "--tag", "team", "--pin", "--json"
    ).json()
    assert (out["importance"], out["tags"], out["pinned"], out["content"]) == (
        0.9,
        ["team"],
        True,
        SEED["rota"],
    )
    assert stellar("--db", db, "update", rota, "--no-pin", "--json").json()["pinned"] is False

    made = stellar("--db", db, "link", rota, backup, "--kind", "supports", "--weight", "0.4", "--json").json()
    assert (made["source_id"], made["target_id"], made["kind"], made["weight"]) == (
        rota,
        backup,
        "supports",
        0.4,
    )
    assert stellar("--db", db, "links", backup, "--direction", "out", "--json").json() == []
    assert [
        e["source_id"] for e in stellar("--db", db, "links", backup, "--direction", "in", "--json").json()
    ] == [rota]
    assert f"{rota} -supports (0.4)-> {backup}" in stellar("--db", db, "links", rota).out

    assert [x["id"] for x in stellar("--db", db, "thread", "standup", "--json").json()] == [rota]
    page = stellar("--db", db, "list", "--zone", "core", "--zone", "outer", "--json").json()
    assert sorted(x["id"] for x in page) == sorted([backup, ids["coffee"]])
    assert len(stellar("--db", db, "list", "--limit", "1", "--offset", "1", "--json").json()) == 1

    newest = stellar("--db", db, "events", "--limit", "2", "--json").json()
    assert [e["op"] for e in newest] == ["link", "update"] and newest[0]["memory_id"] == rota
    assert stellar("--db", db, "events", "--after", str(newest[0]["seq"]), "--json").json() == []
    assert stellar("--db", db, "namespaces", "--json").json() == ["default"]


def test_zones_show_and_configure(stellar: Stellar, db: str) -> None:
    default = stellar("--db", db, "zones", "--json").json()["thresholds"]["core"]
    out = stellar("--db", db, "zones", "--threshold", "core=0.9", "--capacity", "core=5", "--json").json()
    assert (out["thresholds"]["core"], out["capacities"]["core"]) == (0.9, 5)
    assert (
        stellar("--db", db, "zones", "--namespace", "other", "--json").json()["thresholds"]["core"] == default
    )
    bad = stellar("--db", db, "zones", "--threshold", "core=0.1")  # below inner's: refused, nothing set
    assert bad.code == 2 and "thresholds" in bad.err
    assert stellar("--db", db, "zones", "--json").json()["thresholds"]["core"] == 0.9


def test_update_of_a_forgotten_memory_is_an_error(stellar: Stellar, db: str, ids: dict[str, str]) -> None:
    assert stellar("--db", db, "forget", ids["coffee"]).code == 0
    result = stellar("--db", db, "update", ids["coffee"], "--importance", "1")
    assert result.code == 2 and result.err.startswith("error: ") and result.out == ""


# --- ingest ----------------------------------------------------------------------------------
def test_ingest_a_directory_then_again(stellar: Stellar, db: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rota.md").write_text("# Rota\n\nDmitri is on call this week.\n")
    (docs / "blob.txt").write_bytes(b"\x00\x01")
    first = stellar("ingest", str(docs), "--db", db)
    assert first.code == 0, first.err
    assert first.out.startswith("1 sources -> 1 chunks: 1 new memories")
    assert "skipped" in first.out and "binary" in first.out
    again = stellar("ingest", str(docs), "--db", db, "--json")
    assert (again.json()["new"], again.json()["unchanged"]) == (0, 1)


def test_watch_ingests_until_interrupted(db: str, tmp_path: Path) -> None:
    docs = tmp_path / "live"
    docs.mkdir()
    (docs / "a.md").write_text("The first note.")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stellar_core.cli", "ingest", str(docs), "--watch", "--db", db],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while count_file(db, "The second note.") == 0:
            if not (docs / "b.md").exists() and count_file(db, "The first note."):
                (docs / "b.md").write_text("The second note.")  # once the first pass is in
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()  # a watcher that outlived its test would load every later one
    assert proc.returncode == 0, err
    assert "1 new memories" in err  # each batch of changes is reported as it is ingested
    assert "watch stopped" in out


def count_file(db: str, content: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM memories WHERE content = ? AND deleted_at IS NULL", (content,)
            ).fetchone()[0]
        )


def test_security_commands(stellar: Stellar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """grant / grants / revoke, api-key, key new / rotate / usage / retire, audit verify."""
    db = str(tmp_path / "sec.db")
    key_file = tmp_path / "keys.json"
    monkeypatch.setenv("STELLAR_ENCRYPTION_KEY_FILE", str(key_file))
    monkeypatch.setenv("STELLAR_AUDIT_LOG", "true")
    refused = stellar("--db", db, "store", "the door code is 1234", "--encrypt", "--namespace", "team")
    assert refused.code == 2 and "key file" in refused.err  # configured, but not made yet
    assert stellar("key", "new").json()["primary"].startswith("k")
    assert stellar("--db", db, "store", "the rota is on the wiki", "--namespace", "team").code == 0
    assert stellar("--db", db, "store", "the door code is 1234", "--encrypt", "--namespace", "team").code == 0
    old = json.loads(key_file.read_text())["primary"]
    new = stellar("--db", db, "key", "new", "--json").json()["primary"]
    rotated = stellar("--db", db, "key", "rotate", "--json").json()
    assert rotated["usage"] == {new: 1} and rotated["resealed"] == 1
    assert stellar("--db", db, "key", "retire", old).code == 0
    assert stellar("--db", db, "grant", "alice", "team", "reader").code == 0
    assert stellar("--db", db, "grant", "alice", "nowhere", "reader").err.startswith("error: no namespace")
    assert [g["principal"] for g in stellar("--db", db, "grants", "--json").json()] == ["alice"]
    made = stellar("--db", db, "api-key", "create", "alice", "--label", "laptop", "--json").json()
    assert made["key"].startswith("stk_")
    assert stellar("--db", db, "api-key", "list", "--json").json()[0]["label"] == "laptop"
    assert stellar("--db", db, "revoke", "alice", "team").code == 0
    monkeypatch.setenv("STELLAR_ACCESS_CONTROL", "true")
    denied = stellar("--db", db, "--agent", "alice", "recall", "rota", "--namespace", "team")
    assert denied.code == 2 and "may not recall" in denied.err
    checked = stellar("--db", db, "--agent", "alice", "audit", "verify")
    assert checked.code == 2 and "may not audit" in checked.err
    monkeypatch.setenv("STELLAR_ADMINS", '["root"]')
    report = stellar("--db", db, "--agent", "root", "audit", "verify", "--json").json()
    assert report["intact"] and report["checked"] > 5
