"""The file connector: chunks keep every word and their heading; re-ingesting adds nothing;
files that are not text are skipped with a reason instead of failing the run."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from stellar_core import IngestResult, Settings, StellarMemory, SteppingClock, ValidationError
from stellar_core.connectors.files import chunk_markdown, ingest_path, watch_path
from stellar_core.models import Memory

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"

LONG_PARAGRAPH = " ".join(
    f"Pass {i} over Skarvik starts at {i:02d}:15 UTC and lasts nine minutes." for i in range(40)
)
DOC = f"""Preamble before any heading, from the shift log.

# Ground station notes

## Skarvik

Skarvik sees every satellite on almost every orbit.
It has a 7.3 metre antenna.

{LONG_PARAGRAPH}

## Port Alder

```python
# a comment, not a heading

plan = schedule(passes)
```

Radome icing in winter; the heater is checked every October.

## Empty section

### Nested section

Cabo Fría is rented by the pass.
"""


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\S+", text))


def all_memories(mem: StellarMemory, namespace: str | None = None) -> list[Memory]:
    """The live memories of the namespace."""
    found = [Memory.from_dict(d) for d in mem.export(namespace=namespace)["memories"]]
    return [x for x in found if x.deleted_at is None]


@pytest.mark.parametrize("max_chars", [80, 150, 400, 1200])
def test_chunks_keep_every_word_and_respect_the_limit(max_chars: int) -> None:
    chunks = chunk_markdown(DOC, max_chars)
    assert words("\n".join(chunks)) >= words(DOC)  # every word, at least as often
    assert all(0 < len(c) <= max_chars for c in chunks)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.md")), ids=lambda p: p.name)
def test_corpus_chunks_keep_every_word(path: Path) -> None:
    text = path.read_text()
    assert words("\n".join(chunk_markdown(text))) >= words(text)


def test_every_chunk_starts_with_its_heading() -> None:
    chunks = chunk_markdown(DOC, 300)
    assert chunks[0] == "Preamble before any heading, from the shift log."
    skarvik = [c for c in chunks if "over Skarvik" in c]
    assert len(skarvik) > 3
    assert all(c.startswith("## Skarvik\n\n") for c in skarvik)
    # a heading with no text of its own opens the next section's first chunk, once
    nested = [c for c in chunks if "Cabo Fría" in c]
    assert nested == ["## Empty section\n### Nested section\n\nCabo Fría is rented by the pass."]


def test_long_paragraph_is_split_at_sentence_boundaries() -> None:
    chunks = chunk_markdown(f"## Passes\n\n{LONG_PARAGRAPH}", 300)
    bodies = [c.removeprefix("## Passes\n\n") for c in chunks]
    assert len(bodies) > 3
    assert all(b.startswith("Pass ") and b.endswith("nine minutes.") for b in bodies)
    assert " ".join(bodies) == LONG_PARAGRAPH


def test_code_fences_are_one_paragraph_and_hold_no_headings() -> None:
    chunks = chunk_markdown(DOC, 1200)
    fenced = next(c for c in chunks if "plan = schedule" in c)
    assert fenced.startswith("## Port Alder\n\n```python\n# a comment, not a heading\n\nplan")
    assert not any(c.startswith("# a comment") for c in chunks)


def test_unbroken_text_longer_than_a_chunk_is_cut_but_kept() -> None:
    token = "ab" * 300
    assert "".join(chunk_markdown(token, 100)) == token


def test_heading_only_document_and_tiny_limit() -> None:
    assert chunk_markdown("# Title\n\n## Sub\n") == ["# Title\n## Sub"]
    assert chunk_markdown("   \n\n") == []
    with pytest.raises(ValidationError):
        chunk_markdown(DOC, 10)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def test_ingest_stores_one_thread_per_file_with_sources(
    mem: StellarMemory, tmp_path: Path, clock: SteppingClock
) -> None:
    root = write(tmp_path / "docs", {"notes.md": DOC, "sub/rota.txt": "Dmitri is on call."})
    result = ingest_path(mem, root, namespace="ops", importance=0.7)

    expected = chunk_markdown(DOC)
    n = len(expected) + 1
    assert (result.sources, result.chunks, result.new, result.unchanged, result.skipped) == (2, n, n, 0, [])
    notes, rota_key = (root / "notes.md").as_posix(), (root / "sub/rota.txt").as_posix()
    stored = {(x.thread, x.position): x for x in all_memories(mem, "ops")}
    assert [stored[notes, i].content for i in range(len(expected))] == expected
    rota = stored[rota_key, 0]
    assert rota.content == "Dmitri is on call."
    assert rota.importance == 0.7
    assert rota.source is not None
    assert (rota.source.type, rota.source.url, rota.source.chunk) == ("file", rota_key, 0)
    assert rota.source.ingested_at == clock.now()
    assert rota.metadata["source_hash"] == hashlib.sha256(b"Dmitri is on call.").hexdigest()
    assert stored[notes, 2].source.chunk == 2  # type: ignore[union-attr]
    hits = mem.recall("who is on call?", k=1, namespace="ops", source_type="file")
    assert hits[0].memory.id == rota.id


def test_an_unchanged_file_is_skipped_and_a_changed_one_replaces_its_chunks(
    mem: StellarMemory, tmp_path: Path, clock: SteppingClock
) -> None:
    root = write(tmp_path, {"a.md": DOC, "b.md": "# B\n\nOne.\n\n## C\n\nTwo."})
    first = ingest_path(mem, root)
    clock.advance(days=1)
    again = ingest_path(mem, root)
    assert (again.sources, again.new, again.unchanged, again.replaced) == (2, 0, 2, 0)
    assert len(all_memories(mem)) == first.new

    write(root, {"b.md": "# B\n\nOne.\n\n## C\n\nTwo, and a third thing."})
    changed = ingest_path(mem, root)
    assert (changed.new, changed.unchanged, changed.replaced) == (1, 1, 1)
    b = [x for x in all_memories(mem) if x.thread == (root / "b.md").as_posix()]
    assert sorted(x.content for x in b) == ["# B\n\nOne.", "## C\n\nTwo, and a third thing."]
    assert len({x.metadata["source_hash"] for x in b}) == 1  # the kept chunk is current too
    assert ingest_path(mem, root).unchanged == 2  # and so the next run skips the file


def test_a_deleted_file_is_forgotten(mem: StellarMemory, tmp_path: Path) -> None:
    root = write(tmp_path, {"keep.md": "Kept.", "old/gone.md": "# Gone\n\nSoon deleted."})
    ingest_path(mem, root)
    (root / "old" / "gone.md").unlink()
    result = ingest_path(mem, root)
    assert (result.removed, result.replaced, result.unchanged) == (1, 1, 1)
    assert [x.content for x in all_memories(mem)] == ["Kept."]


def test_bad_files_are_skipped_and_nothing_stored_is_lost(mem: StellarMemory, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "good.md": "# Fine\n\nPlain text.",
            "blob.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "latin.md": "Tromsø café".encode("latin-1"),
            "blank.md": "\n  \n",
            "broken.json": '{"pass": 12, "station": ',
            "fine.json": '{"pass": 12, "station": "Skarvik"}',
        },
    )
    result = ingest_path(mem, root)
    assert (result.sources, result.new) == (2, 2)
    reasons = {Path(key).name: why for key, why in result.skipped}
    assert sorted(reasons) == ["blank.md", "blob.txt", "broken.json", "latin.md"]
    assert "binary" in reasons["blob.txt"]
    assert "UTF-8" in reasons["latin.md"]
    assert "empty" in reasons["blank.md"]
    assert "invalid JSON" in reasons["broken.json"]
    assert any('"station": "Skarvik"' in x.content for x in all_memories(mem))

    (root / "good.md").write_bytes(b"\x00" * 10)  # a good file turned binary: its memories stay
    assert "binary" in {Path(k).name: why for k, why in ingest_path(mem, root).skipped}["good.md"]
    assert len(all_memories(mem)) == 2

    missing = ingest_path(mem, tmp_path / "gone.md")
    assert (missing.sources, missing.skipped[0][1]) == (0, "no such file or directory")


def test_oversized_files_and_unreadable_directories_are_skipped(
    open_memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stellar_core.connectors import files

    mem = open_memory(settings=Settings(file_max_bytes=100))
    root = write(tmp_path / "docs", {"big.md": "x" * 200, "small.md": "Small."})
    result = ingest_path(mem, root)
    assert result.new == 1 and "larger than" in result.skipped[0][1]

    def refuse(path: object) -> list[str]:  # what a directory without read permission does
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.os, "listdir", refuse)  # (chmod cannot refuse root, who runs CI)
    locked = ingest_path(mem, root)
    assert "unreadable directory" in locked.skipped[0][1]
    assert len(all_memories(mem)) == 1  # and nothing was forgotten


def test_extension_filter_and_hidden_directories(mem: StellarMemory, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a.md": "Alpha.",
            "b.TXT": "Bravo.",
            "c.rst": "Charlie.",
            ".git/d.md": "Delta.",
            "sub/e.md": "Echo.",
        },
    )
    only_md = ingest_path(mem, root, extensions=(".md",))
    assert (only_md.sources, only_md.skipped) == (2, [])
    assert sorted(x.content for x in all_memories(mem)) == ["Alpha.", "Echo."]

    default = ingest_path(mem, root)  # markdown, text and JSON, any case
    assert (default.sources, default.new, default.unchanged) == (3, 1, 2)

    rst = ingest_path(mem, root / "c.rst")  # named directly but not wanted: said so
    assert rst.sources == 0
    assert "not in" in rst.skipped[0][1]
    assert ingest_path(mem, root, extensions=("rst",)).new == 1


def test_watch_ingests_changes_as_they_happen(mem: StellarMemory, tmp_path: Path) -> None:
    root = write(tmp_path / "live", {"first.md": "The first note."})
    stop = threading.Event()
    results: list[object] = []
    watcher = threading.Thread(target=lambda: results.append(watch_path(mem, root, stop, settle_seconds=0.1)))
    watcher.start()
    try:
        wait_for(lambda: [x.content for x in all_memories(mem)] == ["The first note."])
        write(root, {"second.md": "A second note, written while watched."})
        wait_for(lambda: len(all_memories(mem)) == 2)
        write(root, {"first.md": "The first note, edited."})
        wait_for(lambda: "The first note, edited." in {x.content for x in all_memories(mem)})
        (root / "second.md").unlink()
        wait_for(lambda: [x.content for x in all_memories(mem)] == ["The first note, edited."])
    finally:
        stop.set()
        watcher.join(timeout=10)
    total = results[0]
    assert isinstance(total, IngestResult) and total.removed == 1 and total.new == 3


def test_watch_does_not_ingest_again_what_it_only_read(mem: StellarMemory, tmp_path: Path) -> None:
    """Reading a file fires inotify open and close events; they are no change."""
    root = write(tmp_path / "quiet", {"a.md": "Alpha.", "b.md": "Bravo."})
    stop = threading.Event()
    batches: list[IngestResult] = []
    rounds: list[IngestResult] = []
    watcher = threading.Thread(
        target=lambda: watch_path(
            mem, root, stop, settle_seconds=0.1, on_change=batches.append, on_round=rounds.append
        )
    )
    watcher.start()
    try:
        wait_for(lambda: len(all_memories(mem)) == 2)
        (root / "a.md").read_text()  # as any reader would
        seen = len(rounds)
        wait_for(lambda: len(rounds) >= seen + 3)  # the watcher looked three times since
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert batches == [] and all(r == IngestResult() for r in rounds)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_bad_arguments_fail_the_call(mem: StellarMemory, tmp_path: Path) -> None:
    write(tmp_path, {"a.md": "Alpha."})
    with pytest.raises(ValidationError):
        ingest_path(mem, tmp_path, importance=2.0)
    with pytest.raises(ValidationError):
        ingest_path(mem, tmp_path, namespace="no spaces allowed")


def test_a_deeply_nested_json_file_is_skipped_not_the_folder(mem: StellarMemory, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (docs / "rota.md").write_text("# Rota\n\nDmitri is on call.\n")
    result = ingest_path(mem, docs)
    assert result.new == 1
    assert dict(result.skipped) == {(docs / "deep.json").as_posix(): "JSON nested too deeply"}


def test_special_files_named_directly_are_refused_without_reading(mem: StellarMemory, tmp_path: Path) -> None:
    import os

    (tmp_path / "zero.md").symlink_to("/dev/zero")  # st_size 0, endless when read
    os.mkfifo(tmp_path / "pipe.md")  # opening it would wait for a writer forever
    for name in ("zero.md", "pipe.md"):
        started = time.monotonic()
        result = ingest_path(mem, tmp_path / name)
        assert time.monotonic() - started < 5
        assert result.new == 0 and "not a regular file" in result.skipped[0][1], result


def test_the_size_limit_counts_the_bytes_read(open_memory, tmp_path: Path) -> None:
    mem = open_memory(settings=Settings(file_max_bytes=1_000))
    (tmp_path / "big.md").write_text("x" * 1_001)
    assert "larger than 1,000 bytes" in ingest_path(mem, tmp_path / "big.md").skipped[0][1]


def test_a_folder_walk_stays_inside_the_folder(mem: StellarMemory, tmp_path: Path) -> None:
    """A link inside the folder to a file elsewhere is not followed (name the file to take it);
    links within the folder are."""
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text("# Secret\n\nThe vault PIN is 4417.\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "rota.md").write_text("# Rota\n\nDmitri is on call.\n")
    (docs / "leak.md").symlink_to(secret)
    (docs / "alias.md").symlink_to(docs / "sub" / "rota.md")
    (docs / "outside-dir").symlink_to(secret.parent, target_is_directory=True)
    result = ingest_path(mem, docs)
    assert dict(result.skipped) == {
        (docs / "leak.md").as_posix(): "a link to a file outside the folder (not followed)"
    }
    contents = " ".join(x.content for x in mem.memories(limit=100))
    assert "Dmitri" in contents and "4417" not in contents
    assert ingest_path(mem, docs / "leak.md").new == 1  # named directly: taken
