"""Small things several test modules need."""

from __future__ import annotations

from collections.abc import Iterable

from stellar_core import ImportReport, Link, Memory, StellarMemory
from stellar_core.portability import FORMAT, VERSION


def import_memories(
    mem: StellarMemory, memories: Iterable[Memory], links: Iterable[Link] = ()
) -> ImportReport:
    """Complete memories as they are (ids, times, statistics), through the public import."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "namespace": mem.namespace,
        "memories": [x.to_dict() for x in memories],
        "links": [vars(e) for e in links],
    }
    return mem.import_(document)
