"""Every error stellar_core raises.

    StellarError
    ├── PermanentError          retrying cannot help: fix the input, the file or the settings
    │   ├── ValidationError     bad arguments (empty or oversized content, importance not in 0..1)
    │   ├── NotFoundError       no live memory with that id in that namespace
    │   ├── ConfigurationError  settings that cannot work together
    │   └── StorageError        the database file is unusable (not a database, corrupt)
    │       └── SchemaVersionError  the database was written by a newer stellar version
    └── TransientError          may succeed on retry (database locked, network hiccup)
        └── EmbeddingError      the embedding provider failed (HTTP error, timeout)

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


class EmbeddingError(TransientError):
    """The embedding provider did not answer usefully."""
