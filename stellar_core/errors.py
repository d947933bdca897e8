"""Every error stellar_core raises.

    StellarError
    ├── PermanentError          retrying cannot help: fix the input, the file or the settings
    │   ├── ValidationError     bad arguments (empty or oversized content, importance not in 0..1)
    │   ├── NotFoundError       no live memory with that id in that namespace
    │   ├── ConfigurationError  settings that cannot work together
    │   ├── StorageError        the database file is unusable (not a database, corrupt)
    │   │   └── SchemaVersionError  the database was written by a newer stellar version
    │   ├── PermissionDenied    the principal may not do that in that namespace, or its API
    │   │                       key is unknown, expired or revoked
    │   ├── EncryptionError     a key is missing or wrong, or a ciphertext was altered
    │   ├── SourceError         a source cannot be ingested as it is (malformed URL, 404, not
    │   │                       text, too large, invalid JSON, a private address)
    │   └── SyncError           sync cannot go on as configured (behind the trim point)
    │       └── BadEvent        a change event that cannot be applied (held for inspection)
    └── TransientError          may succeed on retry (database locked, network hiccup)
        ├── EmbeddingError      the embedding provider failed (HTTP error, timeout)
        ├── SourceUnavailable   a source did not answer (timeout, refused, 5xx)
        ├── SummarizerError     the LLM summariser did not answer usefully
        └── SyncUnavailable     Redis, which carries change events, does not answer

Flows retry only ``TransientError``.
"""

from __future__ import annotations


class StellarError(Exception):
    """Base of every stellar_core error."""


class PermanentError(StellarError):
    """Retrying the same call cannot succeed."""


class TransientError(StellarError):
    """The same call may succeed later."""


class ValidationError(PermanentError, ValueError):
    """An argument is out of range or malformed."""


class NotFoundError(PermanentError, KeyError):
    """No live memory with that id in that namespace."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class ConfigurationError(PermanentError):
    """Settings that cannot work (unknown provider, model mismatch, ...)."""


class StorageError(PermanentError):
    """The database cannot be opened or used; nothing was written to it."""


class SchemaVersionError(StorageError):
    """The database schema is newer than this code knows."""


class PermissionDenied(PermanentError):
    """Access control refused the call (nothing was read or written), or a credential is bad."""


class EncryptionError(PermanentError):
    """An encrypted memory cannot be read or written: its key is missing or wrong, or the
    ciphertext was altered. Nothing was changed."""


class EmbeddingError(TransientError):
    """The embedding provider did not answer usefully."""


class SourceError(PermanentError):
    """A source cannot be ingested as it is; asking again will not change that."""


class SourceUnavailable(TransientError):
    """A source did not answer (timeout, connection refused, server error): try again later."""


class SummarizerError(TransientError):
    """The LLM summariser did not answer usefully (HTTP error, timeout, malformed reply)."""


class SyncError(PermanentError):
    """Sync cannot go on as configured (a replica behind the stream's trim point with no
    snapshot to bootstrap from, say)."""


class BadEvent(SyncError):
    """A change event from the stream that cannot be applied: malformed, forged, for another
    namespace or from a newer schema. It is held for inspection, never applied."""


class SyncUnavailable(TransientError):
    """Redis, which carries the change events, does not answer; nothing was lost (the
    outbox keeps what is to be published, the stream what is to be applied)."""
