"""What differs between databases lives in a dialect: connection set-up, full-text search,
upserts, statistics. ``SqliteDialect`` (store/sqlite.py) and ``PostgresDialect``
(store/postgres.py) implement ``Dialect``; nothing else asks which database it runs on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from stellar_core.settings import Settings

if TYPE_CHECKING:
    from stellar_core.embeddings import Embedder
    from stellar_core.store.vectors import VectorIndexes


class TextRows(NamedTuple):
    """Full-text rows to (re)write: each memory's content and, as its thread context, its
    neighbours' contents. Contents are given once by seq: a database that parses each text
    once (PostgreSQL) does not parse a neighbour again for every row it is context of."""

    rows: list[tuple[int, list[int]]]  # (seq, seqs of its thread neighbours)
    texts: dict[int, str]  # the content of every seq named in rows

    def joined(self) -> list[tuple[int, str, str]]:
        """(seq, content, context) with the context as one text."""
        return [(seq, self.texts[seq], "\n".join(self.texts[n] for n in near)) for seq, near in self.rows]


class Dialect(Protocol):
    name: str
    # A read may run part of its work on a second connection at once: the database server
    # does it on another core. (SQLite works inside this process, and ":memory:" is one
    # database per connection.)
    parallel_reads: bool

    def engine_kwargs(self, settings: Settings) -> dict[str, Any]:
        """Keyword arguments for ``sa.create_engine`` (pool, connect args)."""

    def configure(self, engine: Engine) -> None:
        """Hook connection set-up into a new engine."""

    def vector_indexes(self, db: Any, dim: int, settings: Settings) -> VectorIndexes:
        """The vector search of this database (in process, or in the database)."""

    def prepare_vectors(self, conn: sa.Connection, embedder: Embedder) -> None:
        """Whatever the database needs to index the embedder's vectors (asks ``embedder.dim``
        only if it needs it: an HTTP embedder finds it out with a request)."""

    def migration_lock(self, conn: sa.Connection) -> None:
        """Serialise migrations of processes that open the database at once."""

    def lock_namespaces(self, conn: sa.Connection, namespaces: Iterable[str], exclusive: bool) -> None:
        """Until the transaction ends: a reorbit (exclusive) and row-level writers spanning
        namespaces (shared) of the same namespace exclude each other, so they cannot deadlock
        on rows locked in different orders."""

    def refresh_statistics(self, conn: sa.Connection) -> None:
        """Planner statistics after bulk changes."""

    def checkpoint(self, conn: sa.Connection, truncate: bool = False) -> int:
        """Upkeep of the write-ahead log; returns what is left to do (0: nothing).
        ``truncate``: empty the log file too (it keeps old copies of pages)."""

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""

    def insert_keyed(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert rows into a table keyed by an autoincrementing ``seq``; their seqs, in order."""

    def insert_many(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows (dicts with the same keys) the fastest way the database has."""

    def text_index_put(self, conn: sa.Connection, namespace: str, rows: TextRows) -> None:
        """(Re)index rows of one namespace."""

    def text_index_drop(self, conn: sa.Connection, namespace: str, seqs: Sequence[int]) -> None:
        """Remove rows from a namespace's full-text index for good (they are forgotten)."""

    def text_index_scrub(self, conn: sa.Connection, namespace: str, texts: Sequence[str]) -> None:
        """After a purge: nothing the index keeps besides its rows (deleted terms, statistics)
        still holds the words of ``texts``, the purged memories' texts."""

    def text_search(
        self,
        conn: sa.Connection,
        namespace: str,
        terms: Sequence[str],
        limit: int,
        context_weight: float,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[tuple[int, float]]:
        """Top ``limit`` (seq, score) for any of ``terms``, higher score better."""

    def text_index_upkeep(self, db: Any, context_weight: float, seconds: float | None) -> int:
        """Off the query path: whatever keeps full-text search fast, for ``seconds`` at most
        (None: all of it). Returns what is left to do (0: nothing)."""


def namespace_token(namespace: str) -> str:
    """A short identifier-safe token standing for a namespace (names may hold any characters)."""
    return "ns" + hashlib.sha1(namespace.encode()).hexdigest()[:16]


class _in_json_ints(FunctionElement[bool]):
    """``column IN`` the integers of a JSON list parameter (clauses: the column, the parameter)."""

    name = "in_json_ints"
    inherit_cache = True
    type = sa.Boolean()
    # A predicate already: without this, SQLAlchemy renders it on SQLite (no boolean type) as
    # "<expr> = 1", and SQLite plans "(seq IN (...)) = 1" as a scan of the whole table.
    _is_implicitly_boolean = True
    cast_to = "BIGINT"


class _in_json_texts(_in_json_ints):
    name = "in_json_texts"
    inherit_cache = True
    cast_to = "TEXT"


@compiles(_in_json_ints, "sqlite")
def _in_json_sqlite(element: _in_json_ints, compiler: Any, **kw: Any) -> str:
    column, param = (compiler.process(c, **kw) for c in element.clauses)
    return f"{column} IN (SELECT CAST(value AS {element.cast_to}) FROM json_each({param}))"


@compiles(_in_json_ints, "postgresql")
def _in_json_postgresql(element: _in_json_ints, compiler: Any, **kw: Any) -> str:
    # = ANY(array): an index scan with the array's keys whatever the planner believes of the
    # table. As an IN (subquery), a table not analyzed since a bulk load looked empty to the
    # planner, which hashed the whole namespace to probe it (0.28 s per 1,000 stores at 13k).
    column, param = (compiler.process(c, **kw) for c in element.clauses)
    values = f"SELECT CAST(value AS {element.cast_to}) FROM jsonb_array_elements_text(CAST({param} AS jsonb))"
    return f"{column} = ANY(ARRAY({values}))"


def in_json_list(column: sa.ColumnElement[Any], name: str, texts: bool = False) -> sa.ColumnElement[bool]:
    """``column IN`` the values (integers; strings if ``texts``) of a JSON list bound as
    parameter ``name``.

    One parameter, so a statement using it can be built once: an expanded IN list is
    rebuilt and recompiled per call and costs more than the query on the recall path, and on
    PostgreSQL its generic plan for 900 values scanned the whole namespace.
    """
    construct = _in_json_texts if texts else _in_json_ints
    return construct(column, sa.bindparam(name, type_=sa.String))


def json_list(values: Iterable[int]) -> str:
    """The value for an ``in_json_list`` parameter of integers."""
    return json.dumps([int(v) for v in values])


def json_texts(values: Iterable[str]) -> str:
    """The value for an ``in_json_list`` parameter of strings."""
    return json.dumps(list(values))
