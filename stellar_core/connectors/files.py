"""Files -> memories: a file or a directory, once or watched (every change ingested as it
happens).

Each file is one source keyed by its absolute path (``sources``): an unchanged file is
skipped by its hash, a changed one replaces its chunks, a deleted one is forgotten. JSON
files are stored as their pretty-printed JSON; invalid JSON is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from stellar_core import validation as check
from stellar_core.connectors.chunking import chunk_markdown
from stellar_core.connectors.sources import Document, forget_source, ingest_documents, source_keys
from stellar_core.errors import ValidationError
from stellar_core.models import IngestResult

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory

__all__ = ["DEFAULT_EXTENSIONS", "chunk_markdown", "ingest_file", "ingest_path", "watch_path"]

DEFAULT_EXTENSIONS = (".md", ".markdown", ".txt", ".json")


def ingest_path(
    mem: StellarMemory,
    path: Path | str,
    *,
    namespace: str | None = None,
    extensions: Iterable[str] | None = None,
    importance: float = 0.5,
    max_chars: int | None = None,
) -> IngestResult:
    """Ingest a file, or every matching file under a directory, and forget deleted ones.

    Files whose suffix is not in ``extensions`` (default ``DEFAULT_EXTENSIONS``: markdown, text
    and JSON) are ignored when walking a directory (and
    reported as skipped when named directly); hidden files and directories are not walked.
    Unreadable, binary, oversized, non-UTF-8 and invalid JSON files are skipped with a reason.
    """
    root = Path(path).absolute()
    check.importance(importance)  # bad arguments fail the call, not every file one by one
    wanted = _suffixes(DEFAULT_EXTENSIONS if extensions is None else extensions)
    if root.is_dir():
        skipped: list[tuple[str, str]] = []
        try:
            os.listdir(root)  # a walk would pass over an unreadable directory in silence
            files = sorted(_walk(root, wanted, skipped))
        except OSError as exc:
            return IngestResult(skipped=[(str(root), f"unreadable directory: {exc.strerror or exc}")])
        limit = mem.settings.file_max_bytes
        docs = (doc for file in files if (doc := _document(file, skipped, limit)) is not None)
        result = ingest_documents(mem, docs, namespace=namespace, importance=importance, max_chars=max_chars)
        return result + IngestResult(skipped=skipped) + _forget_deleted(mem, root, namespace)
    if not root.exists():
        return IngestResult(skipped=[(str(root), "no such file or directory")]) + _forget_deleted(
            mem, root, namespace
        )
    if root.suffix.lower() not in wanted:
        return IngestResult(
            skipped=[(str(root), f"extension {root.suffix or '(none)'} not in {sorted(wanted)}")]
        )
    return ingest_file(mem, root, namespace=namespace, importance=importance, max_chars=max_chars)


def ingest_file(
    mem: StellarMemory,
    file: Path,
    *,
    namespace: str | None = None,
    importance: float = 0.5,
    max_chars: int | None = None,
) -> IngestResult:
    """One file as one source; a file that cannot be read is skipped with the reason."""
    skipped: list[tuple[str, str]] = []
    doc = _document(file, skipped, mem.settings.file_max_bytes)
    if doc is None:
        return IngestResult(skipped=skipped)
    return ingest_documents(mem, [doc], namespace=namespace, importance=importance, max_chars=max_chars)


def _document(file: Path, skipped: list[tuple[str, str]], limit: int) -> Document | None:
    """The file as a source document, or None (and why, in ``skipped``)."""
    key = file.absolute().as_posix()
    text, reason = read_text(file, limit)
    if text is None:
        skipped.append((key, reason))
        return None
    return Document("file", key, text, metadata={"file_name": file.name})


def read_text(file: Path, limit: int) -> tuple[str | None, str]:
    """The file's text (JSON pretty-printed), or None and why it cannot be ingested (larger
    than ``limit`` bytes, say).

    Only regular files are opened (a FIFO would block the read forever, a device never end),
    and the size limit counts the bytes actually read, not what ``stat`` claims."""
    try:
        if not stat.S_ISREG(os.stat(file).st_mode):
            return None, "not a regular file (a pipe, device or socket)"
        with open(file, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if len(data) > limit:  # larger files are data, not memories
        return None, f"larger than {limit:,} bytes"
    if b"\x00" in data:
        return None, "binary (contains NUL bytes)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start})"
    if not text.strip():
        return None, "empty"
    if file.suffix.lower() == ".json":
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError as exc:
            return None, f"invalid JSON: {exc}"
        except RecursionError:
            return None, "JSON nested too deeply"
    return text.replace("\r\n", "\n").replace("\r", "\n"), ""


# Events of a file opened or closed without a write: nothing changed.
_READ_ONLY = frozenset({EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE})


def watch_path(
    mem: StellarMemory,
    path: Path | str,
    stop: threading.Event,
    *,
    namespace: str | None = None,
    extensions: Iterable[str] | None = None,
    importance: float = 0.5,
    settle_seconds: float = 0.5,
    on_change: Callable[[IngestResult], None] | None = None,
    on_round: Callable[[IngestResult], None] | None = None,
) -> IngestResult:
    """Ingest a directory, then every change under it as it happens, until ``stop`` is set.

    Changes are collected for ``settle_seconds`` (an editor saving a file fires several
    events) and then ingested: created or modified files are (re)ingested, deleted or
    moved-away files forgotten. ``on_change`` is told each batch's result; ``on_round`` every
    round's, an empty result when nothing changed (a caller can tell "nothing happened" from
    "not looked yet").
    """
    root = Path(path).absolute()
    if not root.is_dir():
        raise ValidationError(f"can only watch a directory: {root}")
    wanted = _suffixes(DEFAULT_EXTENSIONS if extensions is None else extensions)
    total = ingest_path(mem, root, namespace=namespace, extensions=wanted, importance=importance)
    changed: set[Path] = set()
    lock = threading.Lock()

    class Collect(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in _READ_ONLY:  # our own reads would re-ingest, forever
                return
            with lock:
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    if p:
                        changed.add(Path(str(p)))

    observer = Observer()
    observer.schedule(Collect(), str(root), recursive=True)
    observer.start()
    try:
        while not stop.wait(settle_seconds):
            with lock:
                batch, changed = sorted(changed), set()
            result = (
                _ingest_changes(mem, root, batch, wanted, namespace, importance) if batch else IngestResult()
            )
            total += result
            if batch and on_change is not None:
                on_change(result)
            if on_round is not None:
                on_round(result)
    finally:
        observer.stop()
        observer.join(timeout=5)
    return total


def _ingest_changes(
    mem: StellarMemory,
    root: Path,
    paths: list[Path],
    wanted: set[str],
    namespace: str | None,
    importance: float,
) -> IngestResult:
    result = IngestResult()
    inside = root.resolve()
    for p in paths:
        if p.is_file() and p.suffix.lower() in wanted and not _hidden(root, p) and not _outside(inside, p):
            result += ingest_file(mem, p, namespace=namespace, importance=importance)
        elif not p.exists():  # a deleted file, or a directory moved away with its files
            result += _forget_deleted(mem, p, namespace)
    return result


def _forget_deleted(mem: StellarMemory, root: Path, namespace: str | None) -> IngestResult:
    """Forget the files ingested from ``root`` (a file, or a directory's tree) that are gone."""
    key = root.as_posix()
    known = source_keys(mem, "file", namespace, prefix=key)
    gone = [k for k in known if (k == key or k.startswith(key.rstrip("/") + "/")) and _vanished(Path(k))]
    forgotten = sum(forget_source(mem, "file", k, namespace) for k in gone)
    return IngestResult(replaced=forgotten, removed=len(gone))


def _vanished(p: Path) -> bool:
    """Known to be gone: a file we may not look at is not taken for deleted."""
    try:
        os.stat(p)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _walk(root: Path, wanted: set[str], skipped: list[tuple[str, str]]) -> Iterable[Path]:
    """The wanted files under ``root``, hidden ones left out. The walk stays inside: links to
    directories are not followed, and a link to a file elsewhere is skipped, so pointing
    the connector at a folder never reads what lies outside it (name the file to take it)."""
    inside = root.resolve()
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            p = Path(folder) / name
            if name.startswith(".") or p.suffix.lower() not in wanted:
                continue
            if _outside(inside, p):
                skipped.append((p.as_posix(), "a link to a file outside the folder (not followed)"))
            elif p.is_file():
                yield p


def _outside(inside: Path, p: Path) -> bool:
    """A link from the folder ``inside`` (resolved) to a file elsewhere."""
    return p.is_symlink() and not p.resolve().is_relative_to(inside)


def _hidden(root: Path, p: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def _suffixes(extensions: Iterable[str]) -> set[str]:
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
