"""JSON export and import of a namespace: memories (every field but the vector) and links.

Import keeps ids, times, zones and statistics, re-embeds content (identical content is
embedded once), skips ids that exist already, and writes change events like any store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stellar_core.errors import ValidationError
from stellar_core.models import ImportReport, Link, Memory, Principal
from stellar_core.store.records import fetch, live
from stellar_core.store.schema import links
from stellar_core.validation import shown

if TYPE_CHECKING:
    from stellar_core.memory import StellarMemory

FORMAT = "stellar-memory-export"
VERSION = 1


def export_namespace(mem: StellarMemory, namespace: str) -> dict[str, Any]:
    """Every live memory and link of a namespace as a JSON-ready document."""
    with mem.db.read() as conn:
        found = fetch(conn, live(namespace))
        rows = conn.execute(
            sa.select(
                links.c.source_id,
                links.c.target_id,
                links.c.kind,
                links.c.weight,
                links.c.created_at,
            )
            .where(links.c.namespace == namespace)
            .order_by(links.c.created_at, links.c.source_id, links.c.target_id)
        ).all()
    ids = {x.id for x in found.values()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "namespace": namespace,
        "memories": [x.to_dict() for _, x in sorted(found.items())],
        "links": [vars(Link(*r)) for r in rows if r[0] in ids and r[1] in ids],
    }


def parse(document: Any) -> tuple[list[Memory], list[Link]]:
    """Check an export document and read its memories and links."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValidationError(f"not a Stellar Memory export (expected format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ValidationError(f"export version {shown(document.get('version'))} is not supported")
    try:
        memories = [Memory.from_dict(d) for d in document["memories"]]
        edges = [Link(**d) for d in document.get("links", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"damaged export document: {exc}") from exc
    return memories, edges


def import_namespace(mem: StellarMemory, document: Any, namespace: str, who: Principal) -> ImportReport:
    """Load an export document into ``namespace`` in one transaction, checked whole first."""
    memories, edges = parse(document)
    return mem.restore(memories, edges, namespace=namespace, principal=who)
