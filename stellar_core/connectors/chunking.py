"""Markdown-aware chunking: documents -> chunks that each make sense read alone."""

from __future__ import annotations

import re

from stellar_core.errors import ValidationError

_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Split points tried in order for an over-long paragraph: sentences, then lines, then words.
_SPLITTERS = (
    (re.compile(r"(?<=[.!?])\s+"), " "),
    (re.compile(r"\n+"), "\n"),
    (re.compile(r"\s+"), " "),
)
_MIN_CHARS = 80


def chunk_markdown(text: str, max_chars: int = 1200) -> list[str]:
    """Split markdown into chunks of at most ``max_chars``, by heading and then by paragraph.

    Every chunk starts with its section's heading line, so a chunk read alone still says what
    it is about. Paragraphs are packed whole; one longer than a chunk is split at sentence
    boundaries (then lines, then words). No text is dropped: only whitespace between pieces
    may change. Fenced code blocks count as one paragraph and their ``#`` lines are not headings.
    """
    if max_chars < _MIN_CHARS:
        raise ValidationError(f"max_chars must be at least {_MIN_CHARS}, not {max_chars}")
    chunks: list[str] = []
    pending: list[str] = []  # headings with no body of their own: shown once, in the next chunk
    for heading, paragraphs in _sections(text):
        if heading is not None and not paragraphs:
            pending.append(heading)
            continue
        chunks.extend(_pack(heading or "", pending, paragraphs, max_chars))
        pending = []
    if pending:  # trailing headings without any body are content too
        chunks.extend(_pack("", [], ["\n".join(pending)], max_chars))
    return chunks


def _sections(text: str) -> list[tuple[str | None, list[str]]]:
    """(heading line or None for the preamble, paragraphs) in document order."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    para: list[str] = []
    fence: str | None = None

    def end_paragraph() -> None:
        if any(line.strip() for line in para):
            sections[-1][1].append("\n".join(para).strip("\n"))
        para.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if fence is not None:
            para.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        if opening := _FENCE.match(line):
            fence = opening.group(1)
            para.append(line)
        elif _HEADING.match(line):
            end_paragraph()
            sections.append((line.strip(), []))
        elif not line.strip():
            end_paragraph()
        else:
            para.append(line)
    end_paragraph()
    return sections


def _pack(heading: str, lead: list[str], paragraphs: list[str], max_chars: int) -> list[str]:
    """Chunks of ``heading`` followed by as many whole paragraphs as fit.

    ``lead`` (body-less headings just before this section) opens the first chunk only.
    """
    limit = max_chars // 3  # a prefix longer than this would crowd out the text
    if len(heading) > limit:  # too long to repeat: it becomes ordinary content
        paragraphs, heading = [heading, *paragraphs], ""
    first = "\n".join([*lead, heading]).strip("\n")
    if len(first) > limit:
        paragraphs, first = ["\n".join(lead), *paragraphs], heading
    budget = max_chars - (len(first) + 2 if first else 0)
    pieces = [piece for p in paragraphs for piece in _split(p, budget, 0)]
    bodies: list[list[str]] = []
    size = 0
    for piece in pieces:
        if bodies and size + 2 + len(piece) <= budget:
            bodies[-1].append(piece)
            size += 2 + len(piece)
        else:
            bodies.append([piece])
            size = len(piece)
    if not bodies:  # a section whose only text is its heading
        return [first] if first else []
    prefixes = [first] + [heading] * (len(bodies) - 1)
    return ["\n\n".join([pre, *body] if pre else body) for pre, body in zip(prefixes, bodies, strict=True)]


def _split(text: str, limit: int, level: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at the gentlest boundary."""
    if len(text) <= limit:
        return [text]
    if level == len(_SPLITTERS):  # one unbroken token longer than a chunk: cut it, keep it all
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pattern, joiner = _SPLITTERS[level]
    out: list[str] = []
    current = ""
    for part in pattern.split(text):
        if not part:
            continue
        if len(part) > limit:
            if current:
                out.append(current)
                current = ""
            out.extend(_split(part, limit, level + 1))
        elif current and len(current) + len(joiner) + len(part) > limit:
            out.append(current)
            current = part
        else:
            current = f"{current}{joiner}{part}" if current else part
    if current:
        out.append(current)
    return out
