"""Summaries: the extractive summariser picks central sentences within the limit; the LLM one
speaks chat completions to a real loopback server; ``summarise`` keeps one current summary per
long document or memory, rewriting it only when its source changed."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from stellar_core import (
    ConfigurationError,
    Document,
    Settings,
    StellarMemory,
    TransientError,
    ValidationError,
)
from stellar_core.connectors.sources import forget_source, ingest_document, source_memories
from stellar_core.errors import NotFoundError, SummarizerError
from stellar_core.models import Memory
from stellar_core.store.schema import changes
from stellar_core.summaries import SummaryResult, summarise
from stellar_core.summarizers import (
    ExtractiveSummarizer,
    LlmSummarizer,
    Summarizer,
    cut_words,
    split_sentences,
    summarizer_for,
)
from stellar_core.validation import content_hash
from tests.conftest import MemoryFactory
from tests.sites import JsonHandler, serving

STATION = """# Skarvik ground station

Skarvik is the northern ground station that tracks every polar satellite on almost every orbit.
The Skarvik antenna is 7.3 metres wide and was rebuilt in 2021 after a storm.

## Operations

Operators at Skarvik schedule each satellite pass two days ahead.
A pass over Skarvik lasts about nine minutes.
The canteen serves waffles on Fridays.

## Maintenance

The Skarvik radome heater is checked every October, before the first ice.
Spare parts for the antenna are kept in the Skarvik store room.
"""
HARBOUR = """# Port Alder harbour

Port Alder harbour loads the supply ship for the research station every second Tuesday.
The harbour master at Port Alder keeps the tide tables and decides when the ship may leave.

Ice closes Port Alder harbour from January to March, so winter supplies are shipped in December.
Fuel for the station generators is pumped aboard at the Port Alder fuel quay.
"""
ROTA = "# Rota\n\nDmitri is on call this week."
KEY = "/notes/skarvik.md"
MODEL = "test-chat"
SMALL = {"summary_min_chars": 300, "summary_max_chars": 150}  # short texts keep the tests fast


# --- extractive --------------------------------------------------------------------------------
def is_subsequence(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(any(x == y for y in rest) for x in part)


def test_extractive_picks_central_sentences_in_their_order() -> None:
    summary = ExtractiveSummarizer().summarize(STATION, 150)
    assert summary == (
        "Skarvik is the northern ground station that tracks every polar satellite on almost every "
        "orbit. A pass over Skarvik lasts about nine minutes."
    )
    assert "waffles" not in ExtractiveSummarizer().summarize(STATION, 400)  # off-topic: never padding


@pytest.mark.parametrize("max_chars", [60, 100, 150, 300, 1000])
def test_extractive_respects_the_limit_and_keeps_whole_sentences(max_chars: int) -> None:
    summary = ExtractiveSummarizer().summarize(STATION, max_chars)
    assert 0 < len(summary) <= max_chars
    assert "#" not in summary  # headings are not sentences
    sentences = split_sentences(STATION)
    if max_chars >= max(len(s) for s in sentences):
        assert is_subsequence(split_sentences(summary), sentences)  # whole, in document order
    assert ExtractiveSummarizer().summarize(STATION, max_chars) == summary  # deterministic


def test_sentences_ignore_headings_code_and_list_markers() -> None:
    text = "# Title\n\nDr. Lund runs it. It is 7.3 m wide.\n\n```\n# not prose.\n```\n- First item\n- Second"
    assert split_sentences(text) == ["Dr. Lund runs it.", "It is 7.3 m wide.", "First item", "Second"]
    assert (
        ExtractiveSummarizer().summarize(text, 500)
        == "Dr. Lund runs it. It is 7.3 m wide. First item. Second"
    )


def test_text_without_sentence_punctuation() -> None:
    lines = [f"station {i} antenna heater radome checked" for i in range(40)]
    paragraphs = ExtractiveSummarizer().summarize("\n\n".join(lines), 120)  # paragraphs are units
    assert len(paragraphs) <= 120
    assert all(p in lines for p in paragraphs.split(". "))
    one_block = ExtractiveSummarizer().summarize("\n".join(lines), 120)  # one paragraph: cut
    assert len(one_block) <= 120 and one_block.endswith("…")
    assert " ".join(lines).startswith(one_block[:-1])


def test_a_single_huge_sentence_is_cut_on_a_word_boundary() -> None:
    text = "Skarvik passes " + ", ".join(f"number {i} at {i % 24:02d}:15" for i in range(200)) + "."
    summary = ExtractiveSummarizer().summarize(text, 100)
    assert len(summary) <= 100 and summary.endswith("…")
    kept = summary[:-1]
    assert text.startswith(kept) and text[len(kept)] in " ,"  # no word was cut in two
    assert cut_words("x" * 50, 10) == "x" * 9 + "…"  # one word longer than the limit: cut anyway


# --- LLM over chat completions -----------------------------------------------------------------
def first_sentence(text: str) -> str:
    prose = " ".join(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    found = re.match(r".*?[.!?](?=\s|$)", prose)
    return found.group(0) if found else prose


class ChatHandler(JsonHandler):
    """``POST /v1/chat/completions`` as OpenAI speaks it; the reply is the text's first sentence."""

    server: ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        srv = self.server
        srv.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": "not found"}})
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            return self._send(401, {"error": {"message": "invalid api key"}})
        messages = body.get("messages")
        if (
            body.get("model") != MODEL
            or [x.get("role") for x in messages or []] != ["system", "user"]
            or body.get("temperature") != 0
            or not isinstance(body.get("max_tokens"), int)
        ):
            return self._send(400, {"error": {"message": "malformed request"}})
        text = messages[1]["content"]
        if srv.mode == "slow":  # answer nothing until the test is over
            srv.release.wait(5)
            return None
        if srv.mode == "500" or (srv.fail_on and srv.fail_on in text):
            return self._send(500, {"error": {"message": "model crashed"}})
        if srv.mode == "broken":
            return self._send_raw(200, b'{"choices": [{"message": {"content": "Skar')
        if srv.mode == "no-choices":
            return self._send(200, {"object": "chat.completion", "choices": []})
        if srv.mode == "null-content":
            return self._send(200, {"choices": [{"message": {"role": "assistant", "content": None}}]})
        reply = text if srv.mode == "echo" else first_sentence(text)
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                ],
            },
        )


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.api_key: str | None = None
        self.fail_on: str | None = None  # answer 500 for texts containing this
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer()
    with serving(srv):
        yield srv
        srv.release.set()  # let handlers held by a test finish before the shutdown


@pytest.fixture
def llm(server: ChatServer) -> Iterator[LlmSummarizer]:
    client = LlmSummarizer(server.url, MODEL, timeout=5)
    yield client
    client.close()


def test_llm_summary_over_chat_completions(server: ChatServer) -> None:
    server.api_key = "sk-test"
    client = LlmSummarizer(server.url + "/", MODEL, api_key="sk-test")
    try:
        summary = client.summarize(STATION, 150)
    finally:
        client.close()
    assert summary == first_sentence(STATION)
    assert client.name == f"llm:{MODEL}"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["json"]
    assert (body["model"], body["temperature"]) == (MODEL, 0)
    assert body["messages"][1] == {"role": "user", "content": STATION}
    assert "150 characters" in body["messages"][0]["content"]


def test_llm_without_a_key_sends_no_authorization(server: ChatServer, llm: LlmSummarizer) -> None:
    llm.summarize(HARBOUR, 150)
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_long_llm_reply_is_trimmed(server: ChatServer, llm: LlmSummarizer) -> None:
    server.mode = "echo"
    summary = llm.summarize(HARBOUR, 130)
    assert len(summary) <= 130
    assert summary == (  # cut after the last whole sentence that fits
        "# Port Alder harbour\n\nPort Alder harbour loads the supply ship for the research station "
        "every second Tuesday."
    )
    server.mode = "ok"
    assert llm.summarize("word " * 200, 40) == "word word word word word word word word…"  # word boundary


@pytest.mark.parametrize("mode", ["500", "broken", "no-choices", "null-content"])
def test_llm_failures_are_summarizer_errors(server: ChatServer, llm: LlmSummarizer, mode: str) -> None:
    server.mode = mode
    with pytest.raises(SummarizerError, match="chat-completions API") as failed:
        llm.summarize(STATION, 150)
    assert isinstance(failed.value, TransientError)
    if mode == "500":
        assert "500" in str(failed.value)


def test_llm_timeout_is_a_summarizer_error(server: ChatServer) -> None:
    server.mode = "slow"
    client = LlmSummarizer(server.url, MODEL, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(SummarizerError, match="timed out"):
        client.summarize(STATION, 150)
    assert time.monotonic() - start < 3
    client.close()


def test_llm_unreachable_and_refused(server: ChatServer) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SummarizerError, match="unreachable"):
        LlmSummarizer(f"http://127.0.0.1:{port}/v1", MODEL, timeout=2).summarize(STATION, 150)
    server.api_key = "sk-right"  # a wrong key cannot succeed for any text: stop the run
    with pytest.raises(ConfigurationError, match="401"):
        LlmSummarizer(server.url, MODEL, api_key="sk-wrong").summarize(STATION, 150)


def test_summarizer_for_settings() -> None:
    assert isinstance(summarizer_for(Settings()), ExtractiveSummarizer)
    chosen = summarizer_for(Settings(summarizer="llm", llm_url="http://127.0.0.1:9/v1", llm_model="m"))
    assert isinstance(chosen, LlmSummarizer) and isinstance(chosen, Summarizer)
    assert chosen.name == "llm:m"
    with pytest.raises(ConfigurationError):
        summarizer_for(Settings().model_copy(update={"summarizer": "abstractive"}))


# --- summarise ---------------------------------------------------------------------------------
def live_memories(mem: StellarMemory) -> list[Memory]:
    found = [Memory.from_dict(d) for d in mem.export()["memories"]]
    return [x for x in found if x.deleted_at is None]


def summaries(mem: StellarMemory) -> list[Memory]:
    return [x for x in live_memories(mem) if x.source is not None and x.source.type == "summary"]


def derived_from(mem: StellarMemory, summary: Memory) -> set[str]:
    return {e.target_id for e in mem.links(summary.id, direction="out", kind="derived_from")}


def change_count(mem: StellarMemory) -> int:
    with mem.engine.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(changes)).scalar_one())


def counts(result: SummaryResult) -> tuple[int, int, int, int, int]:
    return (result.documents, result.memories, result.created, result.unchanged, result.replaced)


@pytest.fixture
def small(open_memory: MemoryFactory) -> StellarMemory:
    return open_memory(settings=Settings(**SMALL))


@pytest.mark.backends
def test_a_long_document_gets_one_summary_kept_current(open_memory: MemoryFactory) -> None:
    mem = open_memory(settings=Settings(**SMALL))
    ingest_document(mem, Document("file", KEY, STATION), importance=0.7, max_chars=200)
    ingest_document(mem, Document("file", "/notes/rota.md", ROTA))  # too short for a summary
    result = summarise(mem)
    assert result.to_dict() == {
        "documents": 1, "memories": 0, "created": 1, "unchanged": 0, "replaced": 0, "failed": []
    }  # fmt: skip

    chunks = source_memories(mem, "file", KEY, mem.namespace)
    text = "\n\n".join(x.content for x in chunks)
    (summary,) = summaries(mem)
    assert summary.content == ExtractiveSummarizer().summarize(text, 150)
    assert summary.source is not None and summary.source.url == KEY
    assert summary.metadata == {
        "summary_of": KEY,
        "source_hash": content_hash(text),
        "summarizer": "extractive",
    }
    assert (summary.thread, summary.importance) == (None, 0.7)
    assert derived_from(mem, summary) == {x.id for x in chunks} and len(chunks) == 3
    hits = mem.recall("which ground station tracks polar satellites?", k=1, source_type="summary")
    assert hits[0].memory.id == summary.id

    before = change_count(mem)  # a second run writes nothing
    assert counts(summarise(mem)) == (1, 0, 0, 1, 0)
    assert change_count(mem) == before

    edited = STATION.replace("northern ground station", "northernmost ground station")
    ingest_document(mem, Document("file", KEY, edited), importance=0.7, max_chars=200)
    assert counts(summarise(mem)) == (1, 0, 1, 0, 1)
    (new,) = summaries(mem)
    assert "northernmost" in new.content and new.id != summary.id
    with pytest.raises(NotFoundError):
        mem.get(summary.id)  # the old summary is forgotten
    assert derived_from(mem, new) == {x.id for x in source_memories(mem, "file", KEY, mem.namespace)}

    n_chunks = len(source_memories(mem, "file", KEY, mem.namespace))
    assert forget_source(mem, "file", KEY) == n_chunks
    assert counts(summarise(mem)) == (0, 0, 0, 0, 1)
    assert summaries(mem) == []


def test_a_document_shrunk_below_the_limit_loses_its_summary(small: StellarMemory) -> None:
    ingest_document(small, Document("file", KEY, STATION))
    summarise(small)
    ingest_document(small, Document("file", KEY, "# Skarvik\n\nClosed for the winter."))
    assert counts(summarise(small)) == (0, 0, 0, 0, 1)
    assert summaries(small) == []


def test_a_long_memory_gets_a_summary(small: StellarMemory) -> None:
    prose = " ".join(line for line in HARBOUR.splitlines() if not line.startswith("#"))
    long = small.store(prose, importance=0.9, thread="chat-1")
    small.store("Port Alder is small.")
    assert counts(summarise(small)) == (0, 1, 1, 0, 0)
    (summary,) = summaries(small)
    assert summary.source is not None and summary.source.url == f"memory:{long.id}"
    assert summary.metadata["summary_of"] == f"memory:{long.id}"
    assert summary.metadata["source_hash"] == long.content_hash
    assert (summary.importance, summary.thread) == (0.9, None)
    assert derived_from(small, summary) == {long.id}
    assert counts(summarise(small)) == (0, 1, 0, 1, 0)  # summaries are never summarised

    small.update(long.id, content=prose.replace("every second Tuesday", "every Monday"))
    assert counts(summarise(small)) == (0, 1, 1, 0, 1)
    (new,) = summaries(small)
    assert "every Monday" in new.content
    small.forget(long.id)
    assert counts(summarise(small)) == (0, 0, 0, 0, 1)
    assert summaries(small) == []


def test_summarise_with_the_llm_summariser_from_settings(
    open_memory: MemoryFactory, server: ChatServer
) -> None:
    server.api_key = "sk-test"
    mem = open_memory(
        settings=Settings(
            **SMALL, summarizer="llm", llm_url=server.url, llm_model=MODEL, llm_api_key="sk-test"
        )
    )
    ingest_document(mem, Document("web", "https://example.org/harbour", HARBOUR))
    assert counts(summarise(mem)) == (1, 0, 1, 0, 0)
    (summary,) = summaries(mem)
    assert summary.content == first_sentence(HARBOUR)
    assert summary.metadata["summarizer"] == f"llm:{MODEL}"

    # An edit after the first sentence leaves the wording: the same summary is brought up to date.
    ingest_document(mem, Document("web", "https://example.org/harbour", HARBOUR + "\nTugs are rented.\n"))
    assert counts(summarise(mem)) == (1, 0, 1, 0, 0)
    (same,) = summaries(mem)
    assert same.id == summary.id and same.metadata["source_hash"] != summary.metadata["source_hash"]
    chunks = source_memories(mem, "web", "https://example.org/harbour", mem.namespace)
    assert {x.id for x in chunks} <= derived_from(mem, same)


def test_one_failing_document_is_reported_and_the_rest_go_on(
    small: StellarMemory, server: ChatServer, llm: LlmSummarizer
) -> None:
    ingest_document(small, Document("file", KEY, STATION))
    ingest_document(small, Document("file", "/notes/harbour.md", HARBOUR))
    summarise(small, summarizer=llm)
    old = {x.source.url: x for x in summaries(small) if x.source}

    server.fail_on = "Port Alder"
    ingest_document(small, Document("file", "/notes/harbour.md", HARBOUR.replace("Tuesday", "Monday")))
    ingest_document(small, Document("file", KEY, STATION.replace("Skarvik is", "Skarvik, up north, is")))
    result = summarise(small, summarizer=llm)
    assert counts(result) == (2, 0, 1, 0, 1)
    (failure,) = result.failed
    assert failure[0] == "/notes/harbour.md" and "500" in failure[1]
    assert result.to_dict()["failed"] == [{"source": "/notes/harbour.md", "reason": failure[1]}]
    now = {x.source.url: x for x in summaries(small) if x.source}
    assert now["/notes/harbour.md"].id == old["/notes/harbour.md"].id  # nothing stored is lost
    assert now[KEY].content.startswith("Skarvik, up north, is")

    server.fail_on = None  # the next run catches up
    assert counts(summarise(small, summarizer=llm)) == (2, 0, 1, 1, 1)


def test_identical_documents_do_not_share_a_summary(small: StellarMemory) -> None:
    ingest_document(small, Document("file", "/a/skarvik.md", STATION))
    ingest_document(small, Document("file", "/b/skarvik.md", STATION))
    result = summarise(small)
    assert counts(result) == (2, 0, 1, 0, 0)
    assert result.failed[0][0] == "/b/skarvik.md" and "would repeat" in result.failed[0][1]
    assert len(summaries(small)) == 1


def test_bad_arguments_fail_the_call(small: StellarMemory) -> None:
    with pytest.raises(ValidationError):
        summarise(small, min_chars=0)
    with pytest.raises(ValidationError):
        summarise(small, namespace="no spaces allowed")
    with pytest.raises(ValidationError):
        ExtractiveSummarizer().summarize(STATION, 0)
