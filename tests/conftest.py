"""Shared fixtures: a real SQLite database per test, the real embedding model once per session."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellar_core import SentenceTransformerEmbedder, StellarMemory, SteppingClock
from stellar_core.embeddings import Embedder

MemoryFactory = Callable[..., StellarMemory]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the packaged copy: the real model, loaded once."""
    model = SentenceTransformerEmbedder()
    model.embed(["warm-up"])
    return model


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def open_memory(tmp_path: Path, embedder: Embedder, clock: SteppingClock) -> Iterator[MemoryFactory]:
    """Opens StellarMemory instances on one database file; all are closed after the test."""
    opened: list[StellarMemory] = []

    def _open(location: Path | str | None = None, **kwargs: object) -> StellarMemory:
        kwargs.setdefault("embedder", embedder)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("background", False)
        mem = StellarMemory(location or tmp_path / "mem.db", **kwargs)  # type: ignore[arg-type]
        opened.append(mem)
        return mem

    yield _open
    for mem in opened:
        with contextlib.suppress(Exception):  # a test may have closed it already
            mem.close()


@pytest.fixture
def mem(open_memory: MemoryFactory) -> StellarMemory:
    """A fresh memory on a real SQLite file, with a stepping clock and no background thread."""
    return open_memory()
