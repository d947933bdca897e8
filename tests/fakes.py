"""Test fakes that implement production interfaces (not mocks of them)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashEmbedder:
    """An ``Embedder`` whose vector for a text is a random unit vector seeded by the text.

    Deterministic and fast, with no meaning: identical texts get identical vectors and any two
    different texts are nearly orthogonal. For tests of scale and plumbing, not of relevance.
    """

    def __init__(self, dim: int = 384, model: str = "test/hash-embedder") -> None:
        self._dim = dim
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            row = np.random.default_rng(seed).standard_normal(self._dim)
            out[i] = row / np.linalg.norm(row)
        return out
