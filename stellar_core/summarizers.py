"""Turning long text into a short summary.

``Summarizer`` is the interface; two implement it: ``ExtractiveSummarizer`` (the default: picks
the document's most central sentences, no model, deterministic) and ``LlmSummarizer`` (any
OpenAI-compatible ``/chat/completions`` API: OpenAI, Ollama, vLLM).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Protocol, runtime_checkable

import httpx

from stellar_core.errors import ConfigurationError, SummarizerError, ValidationError
from stellar_core.settings import Settings

ELLIPSIS = "…"


@runtime_checkable
class Summarizer(Protocol):
    """Anything that shortens a text to at most ``max_chars`` characters."""

    @property
    def name(self) -> str:
        """Recorded on every summary, so one can tell which summariser wrote it."""
        ...

    def summarize(self, text: str, max_chars: int) -> str:
        """A summary of ``text``, at most ``max_chars`` characters long."""
        ...


# --- extractive ------------------------------------------------------------------------------
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_FENCE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")  # a list item starts a sentence of its own
_QUOTE = re.compile(r"^\s*>\s?")
_END = re.compile(r"[.!?…][\"'”’)\]]?\s+")
_WORD = re.compile(r"\w+")
_PARTIAL_WORD = re.compile(r"\s\S*$")
# Words before a full stop that do not end a sentence ("Dr. Lund", "e.g. Skarvik").
_ABBREVIATIONS = frozenset(["mr", "mrs", "ms", "dr", "prof", "vs", "e.g", "i.e", "cf", "fig", "approx"])
_STOPWORD_TEXT = """a about after all also an and any are as at be been before but by can could did do does
    for from had has have he her his how i if in into is it its may more most must no not of on
    once only or other our out over she should so some such than that the their them then there
    these they this those through to under up very was we were what when where which while who
    will with would you your"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_TERMINATED = re.compile(r"[.!?…:;][\"'”’)\]]?$")
_LEAD = 0.1  # the first sentences of a document tend to say what it is about
_SHORT = 6  # sentences of fewer content words are scored down: they say little on their own
_FLOOR = 0.4  # sentences scoring below this share of the best are off-topic: never padding


class ExtractiveSummarizer:
    """The document's most central sentences, in their original order; no model involved.

    Each sentence is scored by the cosine between its TF-IDF vector and the whole document's
    (a sentence that shares the document's characteristic words is central), with a small bonus
    for leading sentences. Markdown headings and fenced code are not sentences.
    """

    @property
    def name(self) -> str:
        return "extractive"

    def summarize(self, text: str, max_chars: int) -> str:
        _check_limit(max_chars)
        sentences = split_sentences(text)
        if not sentences:
            return ""
        # A list item or a line without a full stop gets one when followed by another sentence.
        cost = [len(x) + 1 + (not _TERMINATED.search(x)) for x in sentences]  # with the separator
        if sum(cost) - 1 <= max_chars:
            return _join(sentences)
        scores = _centrality(sentences)
        ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
        if len(sentences[ranked[0]]) > max_chars:
            return cut_words(sentences[ranked[0]], max_chars)
        floor = _FLOOR * scores[ranked[0]]
        chosen: list[int] = []
        seen: set[str] = set()
        used = -1
        for i in ranked:  # best first; a sentence too long for the room left is skipped, not cut
            if scores[i] < floor and chosen:
                break
            if sentences[i] not in seen and used + cost[i] <= max_chars:
                chosen.append(i)
                seen.add(sentences[i])
                used += cost[i]
        return _join([sentences[i] for i in sorted(chosen)])


def _join(sentences: list[str]) -> str:
    done = [x if _TERMINATED.search(x) else x + "." for x in sentences[:-1]]
    return " ".join([*done, sentences[-1]])


def split_sentences(text: str) -> list[str]:
    """The prose sentences of (markdown) text, whitespace collapsed, in order.

    Paragraphs and list items are sentence boundaries; headings and fenced code are dropped.
    Text with none of those left (all code, say) is one sentence.
    """
    blocks: list[str] = []
    current: list[str] = []
    fenced = False

    def flush() -> None:
        if current:
            blocks.append(" ".join(current))
            current.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            flush()
            continue
        if fenced:
            continue
        if not line.strip() or _HEADING.match(line):
            flush()
            continue
        line = _QUOTE.sub("", line)
        if _ITEM.match(line):
            flush()
            line = _ITEM.sub("", line)
        current.append(" ".join(line.split()))
    flush()
    out = [s for block in blocks for s in _split_block(block)]
    if not out:
        whole = " ".join(text.split())
        return [whole] if whole else []
    return out


def _split_block(block: str) -> list[str]:
    out: list[str] = []
    start = 0
    for end in _END.finditer(block):
        if block[end.end() : end.end() + 1].islower():  # "about 9 min. each": not an end
            continue
        if block[end.start()] == ".":
            space = block.rfind(" ", start, end.start())
            word = block[max(space + 1, start) : end.start()].lstrip("(\"'")
            if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper()):  # "J. Lund"
                continue
        out.append(block[start : end.end()].strip())
        start = end.end()
    tail = block[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _terms(sentence: str) -> list[str]:
    return [w for w in _WORD.findall(sentence.lower()) if len(w) > 1 and w not in _STOPWORDS]


def _centrality(sentences: list[str]) -> list[float]:
    """TF-IDF cosine of each sentence against the whole document, with the lead bonus."""
    counts = [Counter(_terms(s)) for s in sentences]
    n = len(sentences)
    df: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
        total.update(c)
    idf = {t: math.log(1.0 + n / d) for t, d in df.items()}
    doc = {t: c * idf[t] for t, c in total.items()}
    doc_norm = math.sqrt(sum(v * v for v in doc.values()))
    scores = []
    for i, c in enumerate(counts):
        vec = {t: k * idf[t] for t, k in c.items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        cosine = sum(v * doc[t] for t, v in vec.items()) / (norm * doc_norm) if norm and doc_norm else 0.0
        brevity = min(1.0, sum(c.values()) / _SHORT)
        scores.append(cosine * brevity * (1.0 + _LEAD / (1 + i)))
    return scores


# --- LLM -------------------------------------------------------------------------------------
_SYSTEM = (
    "You summarise documents for a long-term memory that AI agents search. Write a concise, "
    "factual summary of the user's text: its subject and the facts an agent would need later "
    "(names, numbers, decisions). Plain prose, no preamble, no headings, no lists. "
    "At most {max_chars} characters."
)
_THINKING = re.compile(r"<think>.*?</think>", re.S)  # reasoning models (e.g. via Ollama) emit this


class LlmSummarizer:
    """Any server speaking the OpenAI chat-completions API (OpenAI, Ollama, vLLM ...)."""

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=timeout)
        self._model = model
        self._timeout = timeout

    @property
    def name(self) -> str:
        return f"llm:{self._model}"

    def summarize(self, text: str, max_chars: int) -> str:
        _check_limit(max_chars)
        body = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": _SYSTEM.format(max_chars=max_chars)},
                {"role": "user", "content": text},
            ],
            "temperature": 0,
            "max_tokens": max_chars // 3 + 16,  # ~4 characters a token, with room to finish
        }
        reply = _THINKING.sub("", self._request(body)).strip()
        if not reply:
            raise SummarizerError("chat-completions API sent an empty summary")
        return shorten(reply, max_chars)

    def _request(self, body: dict[str, Any]) -> str:
        try:
            resp = self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise SummarizerError(f"chat-completions API timed out after {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise SummarizerError(f"chat-completions API unreachable: {exc}") from exc
        # Wrong key, URL or model: no document can succeed, so stop the run rather than fail each.
        if resp.status_code in (401, 403, 404):
            raise ConfigurationError(
                f"chat-completions API refused the request ({resp.status_code}): {resp.text[:200]}"
            )
        # Anything else may be about this one text (too long for the context, say): skip it.
        if resp.status_code >= 400:
            raise SummarizerError(f"chat-completions API answered {resp.status_code}: {resp.text[:200]}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SummarizerError(f"chat-completions API sent an unreadable answer: {exc!r}") from exc
        if not isinstance(content, str):
            raise SummarizerError(f"chat-completions API sent {type(content).__name__} as the summary")
        return content

    def close(self) -> None:
        self._client.close()


def summarizer_for(settings: Settings) -> Summarizer:
    """The summariser the settings name."""
    if settings.summarizer == "extractive":
        return ExtractiveSummarizer()
    if settings.summarizer == "llm":
        return LlmSummarizer(
            settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_seconds
        )
    raise ConfigurationError(f"unknown summarizer {settings.summarizer!r}; use 'extractive' or 'llm'")


# --- fitting text into a limit ---------------------------------------------------------------
def shorten(text: str, max_chars: int) -> str:
    """``text`` if it fits; else cut after its last whole sentence that fits, when that keeps at
    least half the room, or else on a word boundary with an ellipsis."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    ends = [e.start() + len(e.group().rstrip()) for e in _END.finditer(text[: max_chars + 1])]
    ends = [e for e in ends if e <= max_chars]
    if ends and ends[-1] >= max_chars // 2:
        return text[: ends[-1]]
    return cut_words(text, max_chars)


def cut_words(text: str, max_chars: int) -> str:
    """``text`` cut on a word boundary to at most ``max_chars`` characters, ending in an ellipsis."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    room = max_chars - len(ELLIPSIS)
    head = text[:room]
    if not text[room].isspace():  # the cut falls inside a word: drop that word
        partial = _PARTIAL_WORD.search(head)
        if partial is not None and partial.start() > 0:
            head = head[: partial.start()]
    return head.rstrip().rstrip(",;:-–—") + ELLIPSIS


def _check_limit(max_chars: int) -> None:
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 2:
        raise ValidationError(f"max_chars must be a whole number of at least 2, not {max_chars!r}")
