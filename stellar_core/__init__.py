"""Stellar Memory: shared long-term memory for AI agents.

from stellar_core import StellarMemory
mem = StellarMemory()
mem.store("The deploy key lives in the vault", importance=0.8, tags=["ops"])
for hit in mem.recall("where is the deploy key?"):
    print(hit.relevance, hit.memory.content)
"""

from typing import TYPE_CHECKING, Any

from stellar_core.admin import AuditCheck, Rotation, Security
from stellar_core.clock import Clock, SteppingClock, SystemClock
from stellar_core.embeddings import Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from stellar_core.errors import (
    BadEvent,
    ConfigurationError,
    EmbeddingError,
    EncryptionError,
    NotFoundError,
    PermanentError,
    PermissionDenied,
    SchemaVersionError,
    SourceError,
    SourceUnavailable,
    StellarError,
    StorageError,
    SummarizerError,
    SyncError,
    SyncUnavailable,
    TransientError,
    ValidationError,
)
from stellar_core.graph import Graph, Neighbourhood
from stellar_core.memory import StellarMemory
from stellar_core.models import (
    ChangeEvent,
    Conflict,
    ForgetReport,
    ImportReport,
    IngestResult,
    Link,
    Memory,
    Op,
    Principal,
    RecallHit,
    ReorbitReport,
    Source,
    Stats,
    SyncStatus,
    Zone,
)
from stellar_core.scoring import ZonePolicy
from stellar_core.security.access import Grant
from stellar_core.security.crypto import KeyProvider, KeyRing
from stellar_core.security.keys import ApiKey
from stellar_core.settings import Settings
from stellar_core.snippets import snippet
from stellar_core.sync.merge import Applied
from stellar_core.sync.replica import Subscription, Sync

if TYPE_CHECKING:
    from stellar_core.connectors.api import ApiSource, ingest_api
    from stellar_core.connectors.files import ingest_path, watch_path
    from stellar_core.connectors.sources import Document, ingest_document
    from stellar_core.connectors.web import ingest_url, ingest_urls
    from stellar_core.dedup import DedupResult, consolidate
    from stellar_core.summaries import SummaryResult, summarise

# The jobs load on first use: an agent that only stores and recalls does not import the
# connectors' libraries (trafilatura, watchdog, an HTML parser).
_JOBS = {
    "ApiSource": "stellar_core.connectors.api",
    "ingest_api": "stellar_core.connectors.api",
    "ingest_path": "stellar_core.connectors.files",
    "watch_path": "stellar_core.connectors.files",
    "Document": "stellar_core.connectors.sources",
    "ingest_document": "stellar_core.connectors.sources",
    "ingest_url": "stellar_core.connectors.web",
    "ingest_urls": "stellar_core.connectors.web",
    "DedupResult": "stellar_core.dedup",
    "consolidate": "stellar_core.dedup",
    "SummaryResult": "stellar_core.summaries",
    "summarise": "stellar_core.summaries",
}


def __getattr__(name: str) -> Any:
    if name not in _JOBS:
        raise AttributeError(f"module 'stellar_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_JOBS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ApiKey",
    "ApiSource",
    "Applied",
    "AuditCheck",
    "BadEvent",
    "ChangeEvent",
    "Clock",
    "ConfigurationError",
    "Conflict",
    "DedupResult",
    "Document",
    "Embedder",
    "EmbeddingError",
    "EncryptionError",
    "ForgetReport",
    "Grant",
    "Graph",
    "ImportReport",
    "IngestResult",
    "KeyProvider",
    "KeyRing",
    "Link",
    "Memory",
    "Neighbourhood",
    "NotFoundError",
    "Op",
    "OpenAIEmbedder",
    "PermanentError",
    "PermissionDenied",
    "Principal",
    "RecallHit",
    "ReorbitReport",
    "Rotation",
    "SchemaVersionError",
    "Security",
    "SentenceTransformerEmbedder",
    "Settings",
    "Source",
    "SourceError",
    "SourceUnavailable",
    "Stats",
    "StellarError",
    "StellarMemory",
    "SteppingClock",
    "StorageError",
    "Subscription",
    "SummarizerError",
    "SummaryResult",
    "Sync",
    "SyncError",
    "SyncStatus",
    "SyncUnavailable",
    "SystemClock",
    "TransientError",
    "ValidationError",
    "Zone",
    "ZonePolicy",
    "consolidate",
    "ingest_api",
    "ingest_document",
    "ingest_path",
    "ingest_url",
    "ingest_urls",
    "snippet",
    "summarise",
    "watch_path",
]
