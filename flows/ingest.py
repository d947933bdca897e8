"""Ingestion flows: files, web pages and JSON APIs -> memories, idempotently."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import Outcome, ingest_each, open_memory
from stellar_core import ApiSource
from tasks.ingest import ingest_api_source, ingest_files_source, ingest_web_source


@flow(name="ingest_files", persist_result=True)
def ingest_files_flow(
    paths: list[str],
    namespace: str | None = None,
    extensions: list[str] | None = None,
    home: str | None = None,
) -> Outcome:
    """Files and directory trees: new and changed files stored, deleted ones forgotten."""
    with open_memory(home) as mem:
        return ingest_each(paths, lambda p: ingest_files_source(mem, p, namespace, extensions), str)


@flow(name="ingest_web", persist_result=True)
def ingest_web_flow(urls: list[str], namespace: str | None = None, home: str | None = None) -> Outcome:
    """Web pages (main text extracted); a page that fails is reported in ``failed``."""
    with open_memory(home) as mem:
        return ingest_each(urls, lambda url: ingest_web_source(mem, url, namespace), str)


@flow(name="ingest_api", persist_result=True)
def ingest_api_flow(
    sources: list[dict[str, Any]], namespace: str | None = None, home: str | None = None
) -> Outcome:
    """JSON endpoints, each ``{url, items, key, fields, title, headers}`` (see ``ApiSource``)."""
    parsed = [ApiSource(**s) for s in sources]
    with open_memory(home) as mem:
        return ingest_each(parsed, lambda s: ingest_api_source(mem, s, namespace), lambda s: s.url)
