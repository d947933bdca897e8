"""Ingestion tasks, one source each: a bad source fails its own task, not the run."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task

from stellar_core import ApiSource, IngestResult, StellarMemory, ingest_api, ingest_path, ingest_url
from tasks.retry import TASK_OPTIONS


@task(**TASK_OPTIONS)
def ingest_files_source(
    mem: StellarMemory,
    path: str,
    namespace: str | None = None,
    extensions: Sequence[str] | None = None,
) -> IngestResult:
    """A file or a directory tree (unreadable files inside it are reported, not raised)."""
    return ingest_path(mem, path, namespace=namespace, extensions=extensions)


@task(**TASK_OPTIONS)
def ingest_web_source(mem: StellarMemory, url: str, namespace: str | None = None) -> IngestResult:
    """One web page."""
    return ingest_url(mem, url, namespace=namespace)


@task(**TASK_OPTIONS)
def ingest_api_source(mem: StellarMemory, source: ApiSource, namespace: str | None = None) -> IngestResult:
    """One JSON endpoint, polled with a conditional request."""
    return ingest_api(mem, source, namespace=namespace)
