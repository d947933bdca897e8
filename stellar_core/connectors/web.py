"""Web pages -> memories.

Each page is one source keyed by the URL it was asked for (``sources``): fetched through the
guarded GET (``http``), its main text extracted as markdown (trafilatura drops navigation,
footers and other boilerplate), headed by its title. An unchanged page adds nothing, a
changed one replaces its chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import trafilatura

from stellar_core import validation as check
from stellar_core.connectors.http import fetch
from stellar_core.connectors.sources import Document, ingest_document
from stellar_core.errors import SourceError, SourceUnavailable, ValidationError
from stellar_core.models import IngestResult, Who

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory

__all__ = ["ACCEPT", "ingest_url", "ingest_urls"]

HTML = ("text/html", "application/xhtml+xml")
ACCEPT = (*HTML, "text/plain", "text/markdown")


def ingest_url(
    mem: StellarMemory,
    url: str,
    *,
    namespace: str | None = None,
    importance: float = 0.5,
    principal: Who = None,
) -> IngestResult:
    """Fetch one page and store its main text; a changed page replaces its old chunks.

    ``principal`` (default: the memory's own agent) must be allowed to ingest into the
    namespace: that is checked before anything is fetched.

    Raises ``SourceError`` (the page cannot be ingested as it is: malformed URL, refused
    address, 4xx, not text, too large, no text found) or ``SourceUnavailable`` (try later).
    """
    check.importance(importance)
    ns, who = mem.engine.scope(namespace, principal)
    mem.engine.authorise("ingest", ns, who)
    page = fetch(url, mem.settings, accept=ACCEPT)
    if page is None:  # only a conditional request gets a 304, and this one is not
        raise SourceError(f"{url}: unexpected 304 Not Modified")
    title: str | None = None
    if page.content_type in HTML:
        text, title = _main_text(page.text, page.url)
    else:
        text = page.text.strip()
    if not text:
        raise SourceError(f"{url}: no text found on the page")
    metadata = {"url": page.url, **({"title": title} if title else {})}
    doc = Document("web", url, text, metadata=metadata)
    try:
        return ingest_document(mem, doc, namespace=ns, importance=importance, principal=who)
    except ValidationError as exc:  # the arguments were checked: this is about the page's text
        raise SourceError(f"{url}: {exc}") from exc


def ingest_urls(
    mem: StellarMemory, urls: Iterable[str], *, namespace: str | None = None, importance: float = 0.5
) -> IngestResult:
    """Ingest every page; a page that fails is reported in ``skipped`` with the reason.

    Bad arguments fail the call up front. Errors that are not about a page (the database,
    the embedding model) are raised: every following page would fail the same way.
    """
    check.importance(importance)
    ns, _ = mem.engine.scope(namespace, None)
    result = IngestResult()
    for url in urls:
        try:
            result += ingest_url(mem, url, namespace=ns, importance=importance)
        except (SourceError, SourceUnavailable) as exc:
            result += IngestResult(skipped=[(str(url), str(exc))])
    return result


def _main_text(html: str, url: str) -> tuple[str, str | None]:
    """The page's main text as markdown, headed by its title; and the title."""
    body = trafilatura.extract(
        html, url=url, output_format="markdown", include_comments=False, include_tables=True
    )
    meta = trafilatura.extract_metadata(html, default_url=url, extensive=False)
    title = (meta.title or "").strip() if meta is not None else ""
    body = (body or "").strip()
    if not body:
        raise SourceError(f"{url}: no main text could be extracted from the page")
    if title and _first_heading(body) != title.casefold():
        body = f"# {title}\n\n{body}"
    return body, title or None


def _first_heading(text: str) -> str:
    first = text.lstrip().split("\n", 1)[0]
    return first.lstrip("#").strip().casefold() if first.startswith("#") else ""
