"""Opening a database: engine, dialect, migrations on open, error translation."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from stellar_core.errors import ConfigurationError, SchemaVersionError, StorageError, TransientError
from stellar_core.settings import Settings
from stellar_core.store.dialect import Dialect
from stellar_core.store.schema import memories

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


class Database:
    """An engine plus its dialect, migrated to the newest schema when opened."""

    def __init__(self, url: str, settings: Settings, create: bool = True) -> None:
        """``create=False`` opens only a database that exists (a mistyped path is an error,
        not a new empty database)."""
        self.url = sa.make_url(url)
        self.dialect: Dialect = dialect_for(self.url, settings)
        self._create = create
        if self.url.get_backend_name() == "sqlite" and self.url.database not in (None, "", ":memory:"):
            path = Path(self.url.database).expanduser()
            if path.is_symlink() and not path.exists():
                raise StorageError(f"{path} is a broken symbolic link (to {path.readlink()})")
            if not create and not path.exists():
                raise StorageError(f"no Stellar Memory database at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(self.url, **_engine_kwargs(self.dialect, settings))
        self.dialect.configure(self.engine)
        self._settings = settings
        self._side: sa.Engine | None = None  # side_read()'s pool, made on first use
        self._peek: sa.Engine | None = None  # peek()'s pool, made on first use
        self._peeks: dict[sa.Select[Any], tuple[str, tuple[str, ...] | None]] = {}  # compiled once
        self._peeking = threading.local()  # each thread's peek cursor
        self._peek_connections: weakref.WeakSet[Any] = weakref.WeakSet()  # closed by close()
        self._side_lock = threading.Lock()
        self._rows = self._added = 0  # memories at the last statistics refresh; added since
        self._refreshing = threading.Lock()  # held while a refresh runs
        try:
            self._migrate()
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            raise StorageError(
                f"cannot open {self.url.render_as_string(hide_password=True)}: "
                f"not a Stellar Memory database or damaged ({exc.orig})"
            ) from exc
        except Exception:
            self.engine.dispose()
            raise

    def _migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(cfg)
        with self.write() as conn:
            self.dialect.migration_lock(conn)
            current = MigrationContext.configure(conn).get_current_revision()
            if current is None and sa.inspect(conn).get_table_names():
                raise StorageError(
                    "the database holds another application's tables; "
                    "give Stellar Memory its own database file"
                )
            if current is None and not self._create:
                raise StorageError(
                    f"{self.url.render_as_string(hide_password=True)} holds no Stellar Memory database"
                )
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError as exc:
                    raise SchemaVersionError(
                        f"the database has schema {current!r}, newer than this version of "
                        "stellar knows; upgrade stellar-memory to open it"
                    ) from exc
            if current != script.get_current_head():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            self._refresh_statistics(conn)

    def added(self, rows: int) -> None:
        """Refresh the planner's statistics once this process has added half as many memories
        as there were at the last refresh. A bulk load into a new database otherwise runs on
        the statistics of an empty one: PostgreSQL then scanned the namespace to look up each
        batch's content hashes (0.25 s per 1,000 stores at 20k memories; autovacuum comes a
        minute later).

        Where the database server analyses on its own cores (``parallel_reads``), the refresh
        runs in a thread and the writer goes on: inline, the batch that crossed the line waited
        for it (0.55 s at 100k memories, about 1 s at 1M). SQLite's ANALYZE would wait for the
        writer's lock instead, so it runs in the writer's place."""
        self._added += rows
        if self._added < max(1_000, self._rows // 2) or not self._refreshing.acquire(blocking=False):
            return
        if self.dialect.parallel_reads:
            threading.Thread(target=self._refresh, name="stellar-analyze", daemon=True).start()
        else:
            self._refresh()

    def _refresh(self) -> None:
        """The refresh ``added`` asked for; its caller's writes are committed already, so a
        failure is logged, and the next batch tries again."""
        try:
            with self.write() as conn:
                self._refresh_statistics(conn)
        except Exception as exc:
            log.warning("planner statistics not refreshed: %s", exc)
        finally:
            self._refreshing.release()

    def _refresh_statistics(self, conn: sa.Connection) -> None:
        self.dialect.refresh_statistics(conn)
        self._rows = conn.execute(sa.select(sa.func.count()).select_from(memories)).scalar_one()
        self._added = 0

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction; commits on success, rolls back on error."""
        with _translated(), self.engine.connect() as conn:
            conn = conn.execution_options(stellar_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read transaction: one consistent snapshot."""
        with _translated(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def side_read(self) -> Iterator[sa.Connection]:
        """A read transaction for work run alongside one of ``read()`` (the recall's lexical
        arm). Its own pool: a thread holding a connection of the first never waits for the
        first pool's last connection from a thread that needs one of each."""
        with self._side_lock:
            if self._side is None:
                self._side = sa.create_engine(self.url, **_engine_kwargs(self.dialect, self._settings))
                self.dialect.configure(self._side)
        with _translated(), self._side.connect() as conn, conn.begin():
            yield conn

    def peek(self, query: sa.Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a small read that needs no snapshot (a cache hit's version): on a
        driver connection this thread keeps for it, in autocommit, with no ping, rollback or
        SQLAlchemy result machinery, so it costs one round trip (PostgreSQL: about 0.1 ms,
        against 0.65 ms through ``read()``). A connection the server dropped is discarded and
        the error raised; the next peek connects anew."""
        compiled = self._peeks.get(query)
        if compiled is None:
            sql = query.compile(dialect=self.engine.dialect)
            keys = tuple(sql.positiontup or ()) if sql.positional else None
            compiled = self._peeks[query] = (str(sql), keys)
        text, keys = compiled
        args = tuple(params[k] for k in keys) if keys is not None else params
        if getattr(self._peeking, "cursor", None) is None:
            self._peeking.conn = self._peek_connection()
            self._peeking.cursor = self._peeking.conn.cursor()
        try:
            self._peeking.cursor.execute(text, args)
            row = self._peeking.cursor.fetchone()
        except Exception:
            self._peeking.cursor = None
            self._peeking.conn.invalidate()
            raise
        return None if row is None else tuple(row)

    def _peek_connection(self) -> Any:
        """A new driver connection for this thread's peeks: autocommit, kept until the thread
        ends (then garbage) or ``close()``."""
        with self._side_lock:
            if self._peek is None:
                kwargs = _engine_kwargs(self.dialect, self._settings)
                for pooled in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pool_pre_ping"):
                    kwargs.pop(pooled, None)
                self._peek = sa.create_engine(
                    self.url, **kwargs, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
                )
            conn = self._peek.raw_connection()  # (returning it to the pool would close it)
            self._peek_connections.add(conn)
            return conn

    def checkpoint(self, truncate: bool = False) -> int:
        """Fold the write-ahead log into the database (see the dialect's ``checkpoint``)."""
        with _translated(), self.engine.connect() as conn:
            return self.dialect.checkpoint(conn, truncate)

    def close(self) -> None:
        # A refresh running in its thread finishes first; the wait is bounded, since a process
        # forked while one ran holds a copy of the lock that nothing will release.
        if self._refreshing.acquire(timeout=60):
            self._refreshing.release()
        self.engine.dispose()
        for pool in (self._side, self._peek):
            if pool is not None:
                pool.dispose()
        for conn in list(self._peek_connections):
            conn.close()


@contextmanager
def _translated() -> Iterator[None]:
    """Lock timeouts are worth a retry; say so with the error type."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        if "locked" in str(exc.orig) or "busy" in str(exc.orig):
            raise TransientError(f"database busy: {exc.orig}") from exc
        # PostgreSQL: deadlock, serialization failure, lost or refused connection.
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        if state in ("40P01", "40001") or state.startswith("08"):
            raise TransientError(f"database temporarily unavailable: {exc.orig}") from exc
        raise


def dialect_for(url: sa.URL, settings: Settings) -> Dialect:
    """The dialect object for a database URL."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        from stellar_core.store.sqlite import SqliteDialect

        return SqliteDialect()
    if backend == "postgresql":
        from stellar_core.store.postgres import PostgresDialect

        return PostgresDialect(settings.database_schema)
    raise ConfigurationError(f"unsupported database {backend!r}; use SQLite or PostgreSQL")


def _engine_kwargs(dialect: Dialect, settings: Settings) -> dict[str, Any]:
    """The dialect's engine options, and JSON columns written and read with orjson (several
    times faster than the json module: every change event holds a memory as JSON)."""
    return {**dialect.engine_kwargs(settings), "json_serializer": _dumps, "json_deserializer": orjson.loads}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_DB_SUFFIXES = {".db", ".sqlite", ".sqlite3"}


def url_for(location: str | Path) -> str:
    """A database URL from a URL, a database file or a data directory."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not (path.suffix in _DB_SUFFIXES or path.is_file()):
        path = path / "stellar.db"
    return f"sqlite:///{path.absolute()}"
