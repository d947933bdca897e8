"""Stellar Memory: shared long-term memory for AI agents.

from stellar_core import StellarMemory
mem = StellarMemory()
mem.store("The deploy key lives in the vault", importance=0.8, tags=["ops"])
for hit in mem.recall("where is the deploy key?"):
    print(hit.relevance, hit.memory.content)
"""

from stellar_core.clock import Clock, SteppingClock, SystemClock
from stellar_core.connectors.files import ingest_path, watch_path
from stellar_core.connectors.sources import Document, ingest_document
from stellar_core.embeddings import Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from stellar_core.errors import (
    ConfigurationError,
    NotFoundError,
    SchemaVersionError,
    StellarError,
    StorageError,
    TransientError,
    ValidationError,
)
from stellar_core.memory import StellarMemory
from stellar_core.models import (
    ForgetReport,
    ImportReport,
    IngestResult,
    Link,
    Memory,
    Principal,
    RecallHit,
    ReorbitReport,
    Source,
    Stats,
    Zone,
)
from stellar_core.settings import Settings

__all__ = [
    "Clock",
    "ConfigurationError",
    "Document",
    "Embedder",
    "ForgetReport",
    "ImportReport",
    "IngestResult",
    "Link",
    "Memory",
    "NotFoundError",
    "OpenAIEmbedder",
    "Principal",
    "RecallHit",
    "ReorbitReport",
    "SchemaVersionError",
    "SentenceTransformerEmbedder",
    "Settings",
    "Source",
    "Stats",
    "StellarError",
    "StellarMemory",
    "SteppingClock",
    "StorageError",
    "SystemClock",
    "TransientError",
    "ValidationError",
    "Zone",
    "ingest_document",
    "ingest_path",
    "watch_path",
]
