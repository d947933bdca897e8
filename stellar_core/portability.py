"""JSON export and import of a namespace: memories (every field but the vector) and links.

Import keeps ids, times, zones and statistics, re-embeds content (identical content is
embedded once), skips ids that exist already, and writes change events like any store, all
in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from stellar_core import reads
from stellar_core import validation as check
from stellar_core.engine import Engine
from stellar_core.errors import ValidationError
from stellar_core.models import ImportReport, Link, Memory, Principal

FORMAT = "stellar-memory-export"
VERSION = 1


def export_namespace(
    engine: Engine, namespace: str | None, principal: str | Principal | None
) -> dict[str, Any]:
    """Every live memory and link of a namespace as a JSON-ready document."""
    with engine.reading("export", namespace, principal) as r:
        found, edges = reads.everything(r.conn, r.namespace)
        found = engine.opened(found)  # an encrypted memory leaves decrypted, marked to be sealed again
        r.saw(x.id for x in found)
    return {
        "format": FORMAT,
        "version": VERSION,
        "namespace": r.namespace,
        "memories": [x.to_dict() for x in found],
        "links": [vars(e) for e in edges],
    }


def parse(document: Any) -> tuple[list[Memory], list[Link]]:
    """Check an export document's envelope and read its memories and links."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValidationError(f"not a Stellar Memory export (expected format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ValidationError(f"export version {check.shown(document.get('version'))} is not supported")
    try:
        memories = [Memory.from_dict(d) for d in document["memories"]]
        edges = [Link(**d) for d in document.get("links", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"damaged export document: {exc}") from exc
    return memories, edges


def import_namespace(
    engine: Engine, document: Any, namespace: str | None, principal: str | Principal | None
) -> ImportReport:
    """Load an export document into ``namespace`` (default: the document's own) in one
    transaction, checked whole first. Memories whose id exists already, or whose content
    exists in the same thread, are skipped; so are links whose ends are not live."""
    if namespace is None and isinstance(document, Mapping):
        namespace = document.get("namespace")
    ns, _ = engine.scope(namespace, principal)
    given, links = parse(document)
    limit = engine.settings.max_content_chars
    for x in given:
        check.record(x, limit)
    for e in links:
        check.link_record(e)
    # The hash is the content's, whatever the document says (dedup relies on it); a memory
    # without a clock stamp gets one now.
    wanted = [
        replace(x, namespace=ns, content_hash=check.content_hash(x.content), hlc=x.hlc or engine.stamp())
        for x in given
    ]
    vectors = engine.vectors_for(ns, [check.draft({"content": x.content}, limit) for x in wanted])
    with engine.writing("import", ns, principal) as tx:
        added, links_added = tx.restore(list(zip(wanted, vectors, strict=True)), links)
    return ImportReport(ns, added, len(wanted) - added, links_added)
