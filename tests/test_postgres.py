"""What only PostgreSQL has: the HNSW index, a schema of its own, migrations raced by several
processes, a pool that outlives a server restart. (The shared behaviour is tested on both
backends by test_store, test_lifecycle and test_recall.)"""

from __future__ import annotations

import multiprocessing
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellar_core import Settings, StellarMemory
from stellar_core.store import pgtext
from tests.fakes import HashEmbedder
from tests.services import Postgres

pytestmark = pytest.mark.postgres_only


def _statements(mem: StellarMemory) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    sa.event.listen(mem.engine.db.engine, "before_cursor_execute", lambda *a: seen.append((a[2], a[3])))
    return seen


def test_recall_searches_vectors_through_the_hnsw_index(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder())
    mem.store_many([f"maintenance note {i} for ground station {i % 7}" for i in range(300)])
    seen = _statements(mem)
    assert mem.recall("ground station 3 maintenance", k=5)
    statement, params = next((s, p) for s, p in seen if "<=>" in s and "ORDER BY" in s)
    with mem.engine.db.read() as conn:
        # A table this small is cheaper to sort; forbid that to see the index can serve the query.
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))  # type: ignore[arg-type]
    assert "ix_memory_vectors_hnsw_384" in plan, plan[:400]


def _waiting(mem: StellarMemory) -> int:
    with mem.engine.db.read() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM memory_vectors WHERE NOT indexed").scalar_one())


@pytest.mark.parametrize("rebuild_min", [10_000, 100], ids=["one-by-one", "rebuilt"])
def test_new_vectors_are_found_before_and_after_they_join_the_graph(
    open_memory, backend, monkeypatch, rebuild_min: int
) -> None:
    mem = open_memory(embedder=HashEmbedder())
    mem.engine.db.dialect.rebuild_min = rebuild_min  # 100: warm() rebuilds the graph
    ids = [x.id for x in mem.store_many([f"telemetry frame {i} from probe {i % 5}" for i in range(120)])]
    assert _waiting(mem) == 120  # the insert left the graph alone
    before = [h.memory.id for h in mem.recall("telemetry frame 42 probe", k=5)]
    assert ids[42] in before
    mem.warm()
    assert _waiting(mem) == 0
    assert [h.memory.id for h in mem.recall("telemetry frame 42 probe", k=5)] == before
    with mem.engine.db.read() as conn:  # the graph is there and whole (a failed concurrent build is not)
        valid = conn.exec_driver_sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'ix_memory_vectors_hnsw_384'"
        ).scalar_one()
    assert valid


_IN_BUFFERS = """
    SELECT count(*), pg_relation_size(:relation) / current_setting('block_size')::int
    FROM pg_buffercache WHERE relfilenode = pg_relation_filenode(:relation) AND relforknumber = 0
      AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_READ_BY_RECALL = (
    "ix_memory_vectors_hnsw_384",
    "memory_text",
    "ix_memory_text_doc",
    "memory_vectors",
    "memories",
)


def test_warm_reads_what_recall_reads_into_shared_buffers(open_memory, backend) -> None:
    """As after a server restart: the graph, the full-text rows and index, the vector and
    memory rows out of the buffers, and warm() brings them back."""
    mem = open_memory(embedder=HashEmbedder())
    mem.store_many([f"star chart {i} of sector {i % 9}" for i in range(400)])
    mem.warm()
    with mem.engine.db.write() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
        for relation in _READ_BY_RECALL:
            conn.execute(sa.text("SELECT pg_buffercache_evict_relation(:r)"), {"r": relation})
            assert conn.execute(sa.text(_IN_BUFFERS), {"relation": relation}).one()[0] == 0
    mem.warm()
    with mem.engine.db.read() as conn:
        for relation in _READ_BY_RECALL:
            cached, blocks = conn.execute(sa.text(_IN_BUFFERS), {"relation": relation}).one()
            assert blocks > 1 and cached == blocks, relation


def test_warm_without_pg_prewarm_still_warms(postgres: Postgres, tmp_path: Path) -> None:
    """A role that may not create the extension: the graph is built, not prewarmed, no error."""
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS plain_owner WITH (FORCE)")
        conn.exec_driver_sql("DROP ROLE IF EXISTS plain")
        conn.exec_driver_sql("CREATE ROLE plain LOGIN")
        conn.exec_driver_sql("CREATE DATABASE plain_owner OWNER plain")
    admin.dispose()
    admin = sa.create_engine(postgres.url("plain_owner"))  # as the README asks an administrator
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
    admin.dispose()
    url = postgres.url("plain_owner").replace("postgres@", "plain@")
    mem = StellarMemory(url, embedder=HashEmbedder(), background=False)
    try:
        mem.store_many([f"beacon {i}" for i in range(30)])
        mem.warm()
        assert _waiting(mem) == 0
        assert mem.engine.vectors().prewarm() is False  # type: ignore[attr-defined]
        assert [h.memory.content for h in mem.recall("beacon 7", k=1)] == ["beacon 7"]
    finally:
        mem.close()


def test_warm_vacuums_the_vector_rows_it_rewrote(open_memory, backend) -> None:
    """Adding vectors to the graph rewrites their rows: warm() clears the dead versions itself,
    not a throttled autovacuum running beside recalls for minutes."""
    mem = open_memory(embedder=HashEmbedder())
    mem.store_many([f"relay log {i} of array {i % 11}" for i in range(300)])
    mem.warm()
    with mem.engine.db.read() as conn:
        vacuums = conn.exec_driver_sql(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'memory_vectors'"
        ).scalar_one()
    assert _waiting(mem) == 0 and vacuums == 1


def test_the_full_text_index_keeps_its_pending_list_short(open_memory, backend) -> None:
    """Every search reads the GIN index's whole pending list: a batch load must not leave the
    default 4 MB of it (migration 0008)."""
    mem = open_memory(embedder=HashEmbedder())
    rng = random.Random(7)
    words = [f"w{i}x" for i in range(5_000)]
    for _ in range(2):
        mem.store_many([" ".join(rng.choices(words, k=15)) for _ in range(1_000)])
    with mem.engine.db.write() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        gin = conn.exec_driver_sql("SELECT pending_pages FROM pgstatginindex('ix_memory_text_doc')")
        pending = gin.scalar_one()
    assert pending <= 256 // 8  # kB / 8 kB pages


def test_the_upkeep_adds_waiting_vectors_to_the_graph(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder(), background=True, settings=Settings(stats_flush_seconds=0.05))
    mem.store_many([f"orbit correction {i}" for i in range(50)])
    deadline = time.monotonic() + 10
    while _waiting(mem) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting(mem) == 0


def test_tables_live_in_the_configured_schema(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder(), settings=Settings(database_schema="agents"))
    mem.store("kept in the agents schema")
    with mem.engine.db.read() as conn:
        schemas = set(
            conn.execute(
                sa.text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'memories'")
            ).scalars()
        )
    assert schemas == {"agents"}
    assert mem.recall("agents schema", k=1)[0].memory.content == "kept in the agents schema"


def _open_and_store(url: str, i: int) -> str:
    with StellarMemory(url, embedder=HashEmbedder(), background=False) as mem:
        return mem.store(f"written by process {i}").id


def test_processes_opening_a_new_database_at_once_migrate_it_once(postgres: Postgres) -> None:
    url = postgres.create_database("raced")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.starmap(_open_and_store, [(url, i) for i in range(4)])
    assert len(set(ids)) == 4
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM memories")).scalar_one() == 4
    engine.dispose()


def test_the_pool_survives_a_database_restart(open_memory, postgres: Postgres, tmp_path: Path) -> None:
    mem = open_memory(embedder=HashEmbedder())
    before = mem.store("stored before the restart")
    assert [h.memory.id for h in mem.recall("stored restart", k=5)] == [before.id]  # both pools used
    postgres.stop()
    postgres.start()  # same port, same data: every pooled connection is now dead
    assert mem.get(before.id).content == "stored before the restart"
    after = mem.store("stored after the restart")
    assert {h.memory.id for h in mem.recall("stored restart", k=5)} == {before.id, after.id}


def test_recall_runs_its_lexical_arm_beside_the_vector_arm_on_a_pool_of_its_own(
    open_memory, backend, monkeypatch
) -> None:
    """Threads recalling at once on one-connection pools: none waits for another's second
    connection, and each gets what a recall with both arms on one connection gets."""
    s = Settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout=5)
    mem = open_memory(embedder=HashEmbedder(), settings=s)
    mem.store_many([{"content": f"note {i} about topic{i % 7} and item{i}"} for i in range(300)])
    queries = [f"topic{i % 7} note item{i}" for i in range(28)]
    monkeypatch.setattr(mem.engine.db.dialect, "parallel_reads", False)
    serial = {q: [h.memory.id for h in mem.recall(q, k=5)] for q in queries}
    monkeypatch.setattr(mem.engine.db.dialect, "parallel_reads", True)
    seen = _statements(mem)
    with ThreadPoolExecutor(8) as pool:
        found = pool.map(lambda q: [h.memory.id for h in mem.recall(q, k=5)], queries)
        beside = dict(zip(queries, found, strict=True))
    assert beside == serial
    assert not [sql for sql, _ in seen if "text_terms" in sql]  # the lexical arm ran on the other pool
    assert [sql for sql, _ in seen if "hnsw" in sql or "<=>" in sql]


def test_pool_settings_reach_the_engine(open_memory, backend) -> None:
    s = Settings(db_pool_size=3, db_max_overflow=2, db_pool_timeout=7.5, db_pool_recycle=600)
    pool = open_memory(embedder=HashEmbedder(), settings=s).engine.db.engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (3, 2, 7.5, 600)  # type: ignore[attr-defined]
    assert pool._pre_ping is True  # type: ignore[attr-defined]


def _zipf_texts(n: int, seed: int = 7) -> list[str]:
    """Sentences over a small vocabulary with a long head: common words and rare ones."""
    rng = random.Random(seed)
    words = [f"w{i}x" for i in range(80)]
    weights = [1 / (i + 1) for i in range(80)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(4, 12))) for _ in range(n)]


def _term_rows(conn: sa.Connection, sql: str) -> set[tuple[object, ...]]:
    return {tuple(r) for r in conn.exec_driver_sql(sql)}


def test_term_statistics_stay_exact_through_every_write(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder())
    texts = _zipf_texts(200)
    stored = mem.store_many([{"content": t, "thread": f"t{i % 9}"} for i, t in enumerate(texts)])
    mem.update(stored[3].id, content="w1x w1x w1x an entirely new text")
    for m in stored[10:40]:
        mem.forget(m.id)
    mem.store_many(_zipf_texts(50, seed=8))
    with mem.engine.db.read() as conn:
        kept = _term_rows(conn, "SELECT namespace, lexeme, docs FROM text_terms WHERE docs > 0")
        actual = _term_rows(
            conn,
            "SELECT t.namespace, u.lexeme, count(*) FROM memory_text t, unnest(t.doc) u "
            "GROUP BY t.namespace, u.lexeme",
        )
        assert kept == actual
        loose = conn.exec_driver_sql(  # the bounds hold for every memory
            "SELECT count(*) FROM memory_text t, unnest(t.doc) u JOIN text_terms s ON s.lexeme = u.lexeme "
            "WHERE s.namespace = t.namespace AND (s.min_length > t.length "
            "OR s.max_content < cardinality(array_positions(u.weights, 'A')) "
            "OR s.max_context < cardinality(u.weights) - cardinality(array_positions(u.weights, 'A')))"
        ).scalar_one()
    assert loose == 0


# Each stored document's terms, their content and context counts, and its length, against
# a parse of the content and of the neighbours' texts joined (window 2, as configured).
_AS_PARSED_WHOLE = """
    WITH want AS (
        SELECT m.seq, setweight(to_tsvector('english', m.content), 'A') || setweight(to_tsvector('english',
               coalesce((SELECT string_agg(n.content, E'\\n' ORDER BY n.position) FROM memories n
                         WHERE n.thread = m.thread AND n.deleted_at IS NULL AND n.position <> m.position
                           AND n.position BETWEEN m.position - 2 AND m.position + 2), '')), 'B') AS doc
        FROM memories m WHERE m.deleted_at IS NULL
    ), terms AS (
        SELECT seq, u.lexeme, cardinality(u.weights) AS every,
               cardinality(array_positions(u.weights, 'A')) AS a
        FROM {table}, unnest(doc) u
    )
    SELECT seq, lexeme, every, a, (SELECT sum(every) FROM terms x WHERE x.seq = terms.seq) FROM terms
"""


def test_each_text_is_parsed_once_with_the_terms_of_parsing_every_context_whole(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder())
    texts = _zipf_texts(120)
    stored = mem.store_many([{"content": t, "thread": f"t{i % 7}"} for i, t in enumerate(texts)])
    mem.store_many([{"content": t, "thread": f"t{i % 3}"} for i, t in enumerate(_zipf_texts(30, seed=5))])
    mem.forget(stored[20].id)  # its neighbours' contexts close the gap
    with mem.engine.db.read() as conn:
        stored_docs = set(conn.exec_driver_sql(_AS_PARSED_WHOLE.format(table="memory_text t")).all())
        parsed = set(conn.exec_driver_sql(_AS_PARSED_WHOLE.format(table="want")).all())
        lengths = conn.exec_driver_sql(
            "SELECT count(*) FROM memory_text t WHERE t.length <> "
            "(SELECT sum(cardinality(u.weights)) FROM unnest(t.doc) u)"
        ).scalar_one()
    assert stored_docs == parsed and len(parsed) > 1000
    assert lengths == 0


# Every posting above its term's floor, ranked as the list was, that is not on the list.
_KEY = pgtext._key_sql("l.list_cw", "l.list_avgdl").replace(":k1", "1.2").replace(":b", "0.75")  # K1, B
_OFF_THE_LISTS = f"""
    SELECT count(*) FROM memory_text t, unnest(t.doc) u, text_terms l
    WHERE l.namespace = t.namespace AND l.lexeme = u.lexeme AND l.list_floor IS NOT NULL
      AND {_KEY} > l.list_floor
      AND NOT EXISTS (SELECT 1 FROM text_top x WHERE x.namespace = t.namespace AND x.lexeme = u.lexeme
                      AND x.seq = t.seq)
"""


def test_term_lists_keep_the_pruned_search_exact_through_writes(open_memory, backend, monkeypatch) -> None:
    mem = open_memory(embedder=HashEmbedder())
    mem.engine.db.dialect.text_tuning = pgtext.Tuning(list_size=8, exhaustive_postings=0)
    texts = _zipf_texts(1_500)
    stored = mem.store_many([{"content": t, "thread": f"t{i // 20}"} for i, t in enumerate(texts)])
    cw = mem.settings.thread_context_weight
    db = mem.engine.db
    assert db.dialect.text_index_upkeep(db, cw, 0.0) > 0  # no time given: all still to do
    mem.warm()
    assert mem.engine.db.dialect.text_index_upkeep(mem.engine.db, cw, None) == 0
    # Writes after the lists were built: memories that beat floors, an edit, forgetting.
    mem.store_many([f"w{i}x w{i}x w{i}x" for i in range(12)] + _zipf_texts(100, seed=5))
    mem.update(stored[5].id, content="w2x w2x w2x w0x")
    for m in stored[50:80]:
        mem.forget(m.id)
    with mem.engine.db.read() as conn:
        assert conn.exec_driver_sql(_OFF_THE_LISTS).scalar_one() == 0
    # Twice as many memories: the upkeep ranks the lists again, a few terms per transaction.
    mem.store_many([f"{t} /usr/lib/x{i % 2}" for i, t in enumerate(_zipf_texts(1_600, seed=6))])
    assert mem.engine.db.dialect.text_index_upkeep(mem.engine.db, cw, 60.0) == 0
    stale = "SELECT count(*) FROM text_terms WHERE docs > 8 AND (list_floor IS NULL OR docs > 2 * list_docs)"
    with mem.engine.db.read() as conn:
        assert conn.exec_driver_sql(stale).scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM text_top").scalar_one() > 100
        assert conn.exec_driver_sql(_OFF_THE_LISTS).scalar_one() == 0

    seen = _statements(mem)
    ns = mem.namespace
    rng = random.Random(5)
    queries = [" ".join(rng.sample(texts, 1)[0].split()[:3]) for _ in range(40)]
    queries += [f"w{i}x w{i + 7}x" for i in range(30)] + ["usr lib x1", "x0 w3x"]
    stopped_on_lists = 0
    for q in queries:
        before = len(seen)
        with mem.engine.db.read() as conn:
            pruned = pgtext.search(conn, ns, q.split(), 10, cw, tuning=pgtext.Tuning(exhaustive_postings=0))
        issued = [s for s, _ in seen[before:] if "text_top" in s]
        stopped_on_lists += len(issued) == 1 and "@@" not in issued[0]  # the lists alone sufficed
        with mem.engine.db.read() as conn:
            exhaustive = pgtext.search(
                conn, ns, q.split(), 10, cw, tuning=pgtext.Tuning(exhaustive_postings=10**9)
            )
        assert [(s, round(x, 9)) for s, x in pruned] == [(s, round(x, 9)) for s, x in exhaustive], q
    assert stopped_on_lists >= 10


def test_the_pruned_lexical_search_finds_the_exhaustive_top(open_memory, backend, monkeypatch) -> None:
    mem = open_memory(embedder=HashEmbedder())
    texts = _zipf_texts(1_500)
    mem.store_many([{"content": t, "thread": f"t{i // 20}"} for i, t in enumerate(texts)])
    rng = random.Random(3)
    queries = [" ".join(rng.sample(texts, 1)[0].split()[:3]) for _ in range(60)]
    queries += [f"w0x w1x w{i}x" for i in range(2, 40)]
    seen = _statements(mem)
    ns = mem.namespace

    def search(exhaustive: bool, q: str) -> list[tuple[int, float]]:
        tuning = pgtext.Tuning(exhaustive_postings=10**9 if exhaustive else 0, rare_postings=40)
        with mem.engine.db.read() as conn:
            found = pgtext.search(conn, ns, q.split(), 10, 0.3, tuning=tuning)
        return [(seq, round(score, 9)) for seq, score in found]

    stopped_early = 0
    for q in queries:
        before = len(seen)
        pruned = search(False, q)
        issued = [p["clauses"] for s, p in seen[before:] if "AS tsquery" in s]  # type: ignore[index]
        stopped_early += any("&" in c for c in issued[-1])  # its last level needed several terms at once
        assert pruned == search(True, q), q
    assert stopped_early >= 10  # 24 of the 98 when written


def test_a_bulk_load_refreshes_planner_statistics_without_waiting_for_them(open_memory, backend) -> None:
    mem = open_memory(embedder=HashEmbedder())
    analysed = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'memories'"
    with mem.engine.db.read() as conn:
        before = conn.exec_driver_sql(analysed).scalar_one()
    blocker = sa.create_engine(mem.engine.db.url)
    with blocker.connect() as conn, ThreadPoolExecutor(1) as pool:  # ANALYZE waits for this lock
        conn.exec_driver_sql("LOCK TABLE memories IN SHARE UPDATE EXCLUSIVE MODE")
        load = pool.submit(mem.store_many, [f"survey log {i} of the outer belt" for i in range(1_000)])
        try:  # 1,000 memories cross the line; the batch does not wait for the refresh
            load.result(timeout=30)
            assert mem.engine.db._refreshing.locked()
        finally:
            conn.rollback()
    blocker.dispose()
    with mem.engine.db._refreshing:  # the refresh finishes in its thread
        pass
    with mem.engine.db.read() as conn:
        assert conn.exec_driver_sql(analysed).scalar_one() != before
