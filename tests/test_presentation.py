"""How a hit is shown to people: where it came from (``Memory.origin``) and the part of it that
answers the query (``snippet``)."""

from __future__ import annotations

import pytest

from stellar_core import Memory, Source, Zone, snippet


def memory(**fields: object) -> Memory:
    base: dict[str, object] = {
        "id": "m1", "namespace": "ns", "content": "x", "content_hash": "h", "importance": 0.5,
        "pinned": False, "recall_count": 0, "created_at": 0.0, "updated_at": 0.0,
        "last_recalled_at": None, "last_access_at": 0.0, "zone": Zone.INNER, "score": 0.5,
    }  # fmt: skip
    return Memory(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields, origin",
    [
        ({"source": Source("file", "/srv/docs/runbook.md", 3), "metadata": {"file_name": "runbook.md"}},
         "runbook.md #3"),
        ({"source": Source("web", "https://a.org/p", 0), "metadata": {"title": "Runbook"}}, "Runbook #0"),
        ({"source": Source("web", "https://example.org/a", 1)}, "https://example.org/a #1"),
        ({"source": Source("api", "https://api.org/items#7", 0)}, "https://api.org/items#7 #0"),
        ({"source": Source("summary", "/srv/docs/runbook.md")}, "summary of runbook.md"),
        ({"source": Source("summary", "https://example.org/a")}, "summary of https://example.org/a"),
        ({"thread": "standup-12", "position": 4}, "standup-12 #4"),
        ({}, ""),
    ],
)  # fmt: skip
def test_origin_names_the_source_and_chunk(fields: dict[str, object], origin: str) -> None:
    assert memory(**fields).origin == origin


DOC = """## Summary

HAL-4 entered safe mode on 3 May after a star-tracker fault. The team reset the tracker.
Nothing else happened that day."""


def test_snippet_is_the_sentence_with_the_query_words_not_the_heading() -> None:
    assert snippet(DOC, "why did HAL-4 enter safe mode?", width=80) == (
        "HAL-4 entered safe mode on 3 May after a star-tracker fault. The team reset…"
    )
    assert snippet(DOC, "who reset the trackers?", width=40) == "…The team reset the tracker. Nothing…"


def test_snippet_without_a_match_starts_at_the_beginning_and_stays_on_one_line() -> None:
    out = snippet(DOC, "coffee machine", width=60)
    assert out.startswith("HAL-4 entered safe mode") and "\n" not in out and len(out) <= 61
    assert snippet("## Only a heading", "x") == "Only a heading"


def test_snippet_of_one_long_sentence_is_cut_around_the_first_query_word() -> None:
    text = "word " * 100 + "the backup window is 02:00 UTC " + "filler " * 100
    out = snippet(text, "backup window", width=80)
    assert "backup window is 02:00 UTC" in out and out.startswith("…") and out.endswith("…")
    assert len(out) <= 82
