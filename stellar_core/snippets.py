"""A short piece of a memory's text for people to read beside a hit: the sentence (or the
stretch of a long one) that holds most of the query's words, not the chunk's first line
(often a heading)."""

from __future__ import annotations

import re

from stellar_core.search.lexical import query_terms

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MARKUP = re.compile(r"^\s*(?:[-*+]\s+|>\s*|\d+[.)]\s+)")  # bullets, quotes, numbered items


def snippet(text: str, query: str = "", width: int = 160) -> str:
    """About ``width`` characters of ``text`` on one line, from the sentence that holds most
    of the query's words (the first sentence when none does; a heading only when nothing else
    is there); "…" marks what was cut."""
    parts = [p for p in _SENTENCE.split(text) if p.strip()] or [text]
    headings = [bool(_HEADING.match(p)) for p in parts]
    sentences = [" ".join(_MARKUP.sub("", _HEADING.sub("", p)).split()) for p in parts]
    wanted = {_stem(t) for t in query_terms(query)} if query.strip() else set()

    def rank(i: int) -> tuple[int, bool, int]:
        words = {_stem(w) for w in _WORD.findall(sentences[i].lower())}
        return len(wanted & words), not headings[i], -i

    best = max(range(len(sentences)), key=rank)
    body = " ".join(s for s in sentences[best:] if s)
    start = 0
    hit = _first_hit(body, wanted)
    if hit > width * 3 // 4:  # the query's words are far into one long sentence
        start = hit - width // 4
    piece = body[start : start + width]
    if start + width < len(body):
        piece = piece[: width - 1].rsplit(" ", 1)[0] + "…"
    if start > 0:
        piece = "…" + piece.split(" ", 1)[-1]  # not half a word
    elif best > 0 and not all(headings[:best]):
        piece = "…" + piece
    return piece


def _stem(word: str) -> str:
    """Crude but enough to match "backups" with "backup": the first five letters."""
    return word[:5]


def _first_hit(text: str, wanted: set[str]) -> int:
    for match in _WORD.finditer(text.lower()):
        if _stem(match.group()) in wanted:
            return match.start()
    return 0
