"""The lexical arm on PostgreSQL: a GIN-indexed ``tsvector`` per memory for matching, BM25
computed in SQL for ranking (``ts_rank`` has no IDF: it lost 0.04 R@10 on LoCoMo), and
statistics per namespace and per term, kept exact by every write.

BM25 is FTS5's, so both databases rank alike: per query term, IDF (floored just above 0)
times the saturated, length-normalised frequency; a hit in the thread context counts
``context_weight`` of a hit in the content.

Scoring every memory that shares a word with the query grows with the namespace (measured:
15 ms at 100k memories, ~370 ms at 1M). So where the query's terms have long posting lists the
search goes by levels, as MaxScore does: level ``s`` scores the memories that match a rare term
or ``s`` of the common terms at once, and the search stops at the first level whose
``limit``-th score beats the most a memory left out could score: one matching at most
``s - 1`` common terms, each adding at most its ``bound``. The result is the exhaustive
search's; only the work differs.

A common term's bound would be its best memory's share, and that is far above what most of
its memories get. So each common term keeps a list of the ``Tuning.list_size`` memories it weighs
most in (ranked by saturated frequency, which is the term's share up to its IDF), and every
level also scores the lists: a memory left off them gets at most the list's floor. The upkeep
builds the lists (``build_lists``); every write adds a memory that beats a floor.

Within a level, a conjunction whose terms' bounds add up to less than the ``limit``-th score
so far is not searched: a memory it would add scores no more than that sum. Each conjunction
is its own index scan, OR-ed in one statement (one tsquery of them all made GIN evaluate the
whole tree per posting: 27 ms where the scans take 3-4). Decision 0017 has the figures.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, groupby
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stellar_core.store.dialect import TextRows, in_json_list, json_list
from stellar_core.store.pgtypes import SEQS_SQL
from stellar_core.store.schema import memories, memory_text

if TYPE_CHECKING:
    from stellar_core.store.database import Database

K1, B = 1.2, 0.75  # the usual constants (FTS5's too)
MAX_CLAUSES = 64  # conjunctions a level may hold; a level needing more is skipped
LIST_DRIFT = 0.2  # lists are ranked again once the average length moved this much
BUILD_POSTINGS = 20_000  # postings read per transaction by the upkeep building lists


@dataclass(frozen=True)
class Tuning:
    """Where the search switches strategy (the defaults were measured: decision 0017)."""

    exhaustive_postings: int = 2_000  # up to this many postings in all, every match is scored at once
    rare_postings: int = 5_000  # the rarest terms, up to this many postings together, match alone
    # memories on a common term's list; terms in more memories than this get one (150, not 300:
    # the first level of a many-word query scores every list)
    list_size: int = 150


@dataclass(frozen=True)
class Term:
    lexeme: str
    docs: int  # memories of the namespace holding it
    idf: float
    bound: float  # the most it can add to one memory's score (off its list, if it has one)
    listed: bool  # its list is scored at every level


def put(conn: sa.Connection, namespace: str, rows: TextRows) -> None:
    """(Re)index rows of one namespace. Each text is parsed once, and a row's context is its
    neighbours' parsed texts put together (a batch of threads parsed every text about three
    times: 26 ms per 1,000 rows, 15 ms this way, with the same terms and counts)."""
    if not rows.rows:
        return
    seqs = [seq for seq, _ in rows.rows]
    drop(conn, namespace, seqs)
    params = {
        "ns": namespace,
        "seqs": seqs,
        "text_seqs": list(rows.texts),
        "texts": list(rows.texts.values()),
        "near_of": [seq for seq, near in rows.rows for _ in near],
        "near": [n for _, near in rows.rows for n in near],
    }
    conn.execute(_PUT_TEXT, params)
    _add_statistics(conn, namespace, seqs, +1)


def drop(conn: sa.Connection, namespace: str, seqs: Sequence[int], unlist: bool = False) -> None:
    """Remove rows from a namespace's index. Their list entries stay until the list is built
    again (a list may hold more than its best memories, each scored from its row, never
    fewer), unless ``unlist``: the rows are forgotten, so they leave the lists now."""
    if not seqs:
        return
    _add_statistics(conn, namespace, seqs, -1)
    params = {"ns": namespace, "seqs": json_list(seqs)}
    if unlist:
        conn.execute(_UNLIST, params)
    conn.execute(memory_text.delete().where(in_json_list(memory_text.c.seq, "seqs")), params)


def scrub(conn: sa.Connection, namespace: str, texts: Sequence[str]) -> None:
    """Forget the terms of ``texts`` (purged memories' texts) that no memory holds any
    longer: their statistics and lists. The namespace's statistics row is locked first, as
    every writer locks it."""
    if not texts or conn.execute(_LOCK_STATS, {"ns": namespace}).first() is None:
        return
    for i in range(0, len(texts), 500):
        conn.execute(_FORGET_TERMS, {"ns": namespace, "texts": list(texts[i : i + 500])})


def _add_statistics(conn: sa.Connection, namespace: str, seqs: Sequence[int], sign: int) -> None:
    """Add (or take away) the rows' documents, tokens and terms. The namespace's row is
    locked first: writers of one namespace then take the term rows one at a time, and in
    lexeme order, so they never deadlock."""
    params = {"ns": namespace, "seqs": json_list(seqs), "sign": sign}
    conn.execute(_ADD_STATS, params)
    conn.execute(_ADD_TERMS if sign > 0 else _TAKE_TERMS, {**params, "k1": K1, "b": B})


def search(
    conn: sa.Connection,
    namespace: str,
    words: Sequence[str],
    limit: int,
    context_weight: float,
    where: sa.ColumnElement[bool] | None = None,
    tuning: Tuning = Tuning(),
) -> list[tuple[int, float]]:
    """BM25 top ``limit`` (seq, score) for any of ``words`` (letters and digits only)."""
    if not words:
        return []
    found = conn.execute(_TERMS, {"ns": namespace, "text": " ".join(words)}).all()
    if not found:
        return []
    docs, tokens = found[0][5], found[0][6]
    avgdl = max(tokens / max(docs, 1), 1.0)
    terms = sorted((_term(row, docs, avgdl, context_weight) for row in found), key=lambda t: t.docs)
    score = _Scorer(conn, namespace, terms, limit, context_weight, avgdl)
    if where is not None:
        allowed = conn.execute(sa.select(memories.c.seq).where(memories.c.namespace == namespace, where))
        return score([_any(terms)], seqs=json_list(allowed.scalars()))
    if sum(t.docs for t in terms) <= tuning.exhaustive_postings:
        return score([_any(terms)])

    alone, postings = [], 0  # rare terms without a list match alone
    for t in terms:
        if not t.listed and postings + t.docs <= tuning.rare_postings:
            alone.append(t)
            postings += t.docs
    common = [t for t in terms if t not in alone]
    lists = [t.lexeme for t in terms if t.listed]
    if lists:  # with lists a level may stop however few memories its conjunctions match
        levels = [
            s for s in range(len(common) + 1, 0, -1) if s == 1 or math.comb(len(common), s) <= MAX_CLAUSES
        ]
    else:
        levels = _levels(common, limit - postings, docs)
    bounds = sorted((t.bound for t in common), reverse=True)
    best: dict[int, float] = {}
    rare = [_quote(t.lexeme) for t in alone]
    theta, above, scored = 0.0, len(common) + 2, list[str]()
    for s in levels:
        # A memory first found at level s holds no rare term and exactly s common ones (if the
        # level above ran), each off its list: a conjunction that cannot reach theta is left out.
        every = [(_all(c), sum(t.bound for t in c)) for c in combinations(common, s)]
        clauses = [q for q, most in every if above != s + 1 or most * (1 + 1e-9) >= theta]
        if clauses or lists or not scored:
            best.update(score(clauses if scored else rare + clauses, lists, scored))
        top = sorted(best.items(), key=lambda hit: (-hit[1], hit[0]))[:limit]
        theta = top[limit - 1][1] if len(top) >= limit else 0.0
        if s == 1 or theta > sum(bounds[: s - 1]) * (1 + 1e-9):
            return top
        # The next level scores only the memories it adds; the lists are scored once.
        best, lists, above, scored = dict(top), [], s, rare + [q for q, _ in every]
    raise AssertionError("level 1 always returns")  # pragma: no cover


def _term(row: Sequence[Any], n: int, avgdl: float, cw: float) -> Term:
    lexeme, docs, max_content, max_context, min_length, _, _, floor, list_avgdl, list_cw = row
    idf = max(math.log((n - docs + 0.5) / (docs + 0.5)), 1e-6)
    tf = max_content + cw * max_context
    best = tf / (tf + K1 * (1 - B + B * min_length / avgdl))
    # A list ranked with a larger context weight still bounds this search's frequencies.
    listed = floor is not None and list_cw >= cw
    if listed:
        best = min(best, _floor_now(floor, list_avgdl / avgdl))
    return Term(lexeme, docs, idf, idf * (K1 + 1) * best, listed)


def _floor_now(floor: float, r: float) -> float:
    """A floor ``c`` of tf / (tf + X) ranked at an average length ``r`` times today's: since
    X >= min(1, r) * X_then and tf (1 - c) / c <= X_then, the share today is at most
    c / (c + min(1, r) (1 - c))."""
    return floor / (floor + min(1.0, r) * (1 - floor)) if floor > 0 else 0.0


def _levels(common: Sequence[Term], wanted: int, n: int) -> list[int]:
    """Levels to try, from the deepest likely to find ``wanted`` more memories (assuming the
    terms independent; a wrong guess costs a query, never a result) down to 1. The level past
    the last common term holds the rare terms alone."""
    top = len(common) + 1
    for s in range(len(common) + 1, 0, -1):
        top = s
        if sum(n * math.prod(t.docs / n for t in c) for c in combinations(common, s)) >= wanted:
            break
    return [s for s in range(top, 0, -1) if s == 1 or math.comb(len(common), s) <= MAX_CLAUSES]


def _any(terms: Sequence[Term]) -> str:
    return " | ".join(_quote(t.lexeme) for t in terms)


def _all(terms: Sequence[Term]) -> str:
    return " & ".join(_quote(t.lexeme) for t in terms)


def _quote(lexeme: str) -> str:
    """A lexeme as a tsquery operand (lexemes of stored text may hold quotes, backslashes)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


class _Scorer:
    """Exact BM25 of the memories matching a tsquery (and among ``seqs``, if given)."""

    def __init__(
        self, conn: sa.Connection, namespace: str, terms: Sequence[Term], limit: int, cw: float, avgdl: float
    ) -> None:
        self._conn = conn
        self._params = {
            "ns": namespace,
            "lexemes": [t.lexeme for t in terms],
            "idfs": [t.idf for t in terms],
            "limit": limit,
            "cw": cw,
            "avgdl": avgdl,
            "k1": K1,
            "b": B,
        }

    def __call__(
        self,
        clauses: Sequence[str],
        lists: Sequence[str] = (),
        scored: Sequence[str] = (),
        seqs: str | None = None,
    ) -> list[tuple[int, float]]:
        """The top memories matching any of ``clauses`` (tsqueries) and none of ``scored``, or
        on the lists of ``lists`` (among ``seqs``)."""
        params = {"clauses": list(clauses), "lists": list(lists), "scored": list(scored), "seqs": seqs}
        statement = _score_sql(bool(clauses), bool(lists), bool(scored), seqs is not None)
        rows = self._conn.execute(statement, self._params | params)
        return [(int(seq), float(score)) for seq, score in rows]


def _key_sql(
    cw: str,
    avgdl: str,
    content: str = "cardinality(array_positions(u.weights, 'A'))",
    every: str = "cardinality(u.weights)",
    length: str = "t.length",
) -> str:
    """A posting's saturated frequency, its list key (by default of ``unnest(doc) u`` of
    ``memory_text t``)."""
    tf = f"({content} + {cw} * ({every} - {content}))"
    return f"{tf} / ({tf} + :k1 * (1 - :b + :b * {length} / {avgdl}))"


# Lexemes are bound as they are (CAST to tsquery, not to_tsquery, which would stem them again).
_TERMS = sa.text(
    "SELECT t.lexeme, t.docs, t.max_content, t.max_context, t.min_length, s.docs, s.length, "
    "t.list_floor, t.list_avgdl, t.list_cw "
    "FROM unnest(tsvector_to_array(to_tsvector('english', :text))) AS q(lexeme) "
    "JOIN text_terms t ON t.namespace = :ns AND t.lexeme = q.lexeme "
    "JOIN text_stats s ON s.namespace = :ns WHERE t.docs > 0"
)


_ROW = "seq, length, doc FROM memory_text"


@functools.lru_cache(maxsize=16)
def _score_sql(match: bool, lists: bool, exclude: bool = False, among: bool = False) -> sa.TextClause:
    """BM25 of the memories matching any of :clauses and none of :scored, or on the lists of
    :lists. Each memory's row is read once: the scan that finds it also scores it."""
    matching = "doc @@ ANY(CAST(:clauses AS tsquery[]))"
    found = []
    if match:  # one index scan per clause, OR-ed: far cheaper than one tsquery of them all
        skip = " AND NOT doc @@ ANY(CAST(:scored AS tsquery[]))" if exclude else ""
        restrict = f" AND seq IN ({SEQS_SQL})" if among else ""
        found.append(f"SELECT {_ROW} WHERE namespace = :ns AND {matching}{skip}{restrict}")
    if lists:
        again = f" AND NOT {matching}" if match else ""  # found by the match already
        found.append(
            f"SELECT {_ROW} WHERE namespace = :ns AND seq IN (SELECT seq FROM text_top "
            f"WHERE namespace = :ns AND lexeme = ANY(CAST(:lists AS text[]))){again}"
        )
    return sa.text(
        f"""
        WITH terms AS (
            SELECT * FROM unnest(CAST(:lexemes AS text[]), CAST(:idfs AS float8[])) AS x(lexeme, idf)
        ), found AS ({" UNION ALL ".join(found)}
        ), hits AS (
            SELECT t.seq, u.lexeme, {_key_sql(":cw", ":avgdl")} AS share
            FROM found t, unnest(t.doc) u WHERE u.lexeme = ANY(CAST(:lexemes AS text[]))
        )
        SELECT h.seq, sum(x.idf * (:k1 + 1) * h.share) AS score
        FROM hits h JOIN terms x USING (lexeme)
        GROUP BY h.seq ORDER BY score DESC, h.seq LIMIT :limit
        """
    )


# One statement for the batch: arrays, not a statement per row. A text's length is its
# tokens (positions); a context's, the sum of its texts'.
_PUT_TEXT = sa.text(
    """
    WITH parsed AS MATERIALIZED (
        SELECT t.seq, p.doc,
               coalesce((SELECT sum(array_length(u.positions, 1)) FROM unnest(p.doc) u), 0) AS length
        FROM unnest(CAST(:text_seqs AS bigint[]), CAST(:texts AS text[])) AS t(seq, content),
             LATERAL (SELECT to_tsvector('english', t.content) AS doc) p
    ), context AS (
        SELECT n.seq, stellar_tsvector_agg(p.doc) AS doc, sum(p.length) AS length
        FROM unnest(CAST(:near_of AS bigint[]), CAST(:near AS bigint[])) AS n(seq, near)
        JOIN parsed p ON p.seq = n.near GROUP BY n.seq
    )
    INSERT INTO memory_text (seq, namespace, doc, length)
    SELECT r.seq, :ns, setweight(o.doc, 'A') || setweight(coalesce(c.doc, ''), 'B'),
           o.length + coalesce(c.length, 0)
    FROM unnest(CAST(:seqs AS bigint[])) AS r(seq) JOIN parsed o USING (seq) LEFT JOIN context c USING (seq)
    """
)
_ADD_STATS = sa.text(
    "INSERT INTO text_stats (namespace, docs, length) "
    "SELECT :ns, :sign * count(*), :sign * coalesce(sum(length), 0) FROM memory_text "
    f"WHERE seq IN ({SEQS_SQL}) "
    "ON CONFLICT (namespace) DO UPDATE "
    "SET docs = text_stats.docs + excluded.docs, length = text_stats.length + excluded.length"
)
_POSTINGS = f"""
    SELECT u.lexeme, t.seq, t.length, cardinality(array_positions(u.weights, 'A')) AS content,
           cardinality(u.weights) AS every
    FROM memory_text t, unnest(t.doc) u WHERE t.seq IN ({SEQS_SQL})
"""
_UPSERT_TERMS = """
    INSERT INTO text_terms (namespace, lexeme, docs, max_content, max_context, min_length)
    SELECT :ns, lexeme, :sign * count(*), max(content), max(every - content), min(length)
    FROM h GROUP BY lexeme ORDER BY lexeme
    ON CONFLICT (namespace, lexeme) DO UPDATE SET
        docs = text_terms.docs + excluded.docs,
        max_content = greatest(text_terms.max_content, excluded.max_content),
        max_context = greatest(text_terms.max_context, excluded.max_context),
        min_length = least(text_terms.min_length, excluded.min_length)
"""
_TAKE_TERMS = sa.text(f"WITH h AS ({_POSTINGS}) {_UPSERT_TERMS}")
# A forgotten row's entries on the lists of its terms (found by the list's key).
_UNLIST = sa.text(
    "DELETE FROM text_top p USING memory_text t, unnest(t.doc) u "
    f"WHERE t.seq IN ({SEQS_SQL}) AND p.namespace = :ns AND p.lexeme = u.lexeme AND p.seq = t.seq"
)
# Terms of the texts held by no memory: the term rows go, and with them what lists remain.
_FORGET_TERMS = sa.text(
    """
    WITH words AS (
        SELECT DISTINCT w.lexeme FROM unnest(CAST(:texts AS text[])) AS x(content),
            unnest(tsvector_to_array(to_tsvector('english', x.content))) AS w(lexeme)
    ), gone AS (
        DELETE FROM text_terms t USING words
        WHERE t.namespace = :ns AND t.lexeme = words.lexeme AND t.docs <= 0 RETURNING t.lexeme
    )
    DELETE FROM text_top p USING gone WHERE p.namespace = :ns AND p.lexeme = gone.lexeme
    """
)
# Added rows also go on the lists whose floors they beat (ranked as each list was).
_ADD_TERMS = sa.text(
    f"""
    WITH h AS MATERIALIZED ({_POSTINGS}),
    terms AS ({_UPSERT_TERMS} RETURNING lexeme, list_floor, list_avgdl, list_cw)
    INSERT INTO text_top (namespace, lexeme, seq, key)
    SELECT :ns, lexeme, seq, key FROM (
        SELECT h.lexeme, h.seq, l.list_floor,
               {_key_sql("l.list_cw", "l.list_avgdl", "h.content", "h.every", "h.length")} AS key
        FROM h JOIN terms l USING (lexeme) WHERE l.list_floor IS NOT NULL
    ) x WHERE key > list_floor
    ON CONFLICT (namespace, lexeme, seq) DO UPDATE SET key = excluded.key
    """
)


# Terms whose list is missing, or ranked too long ago: their memories doubled since, the
# average length moved, or recall now weighs thread context more than the list did.
_STALE_LISTS = sa.text(
    """
    SELECT t.namespace, t.lexeme, t.docs,
           (SELECT sum(a.docs) FROM text_terms a WHERE a.namespace = t.namespace) AS postings
    FROM text_terms t JOIN text_stats s USING (namespace)
    WHERE t.docs > :size AND (t.list_docs IS NULL OR t.docs > 2 * t.list_docs OR t.list_cw < :cw
          OR abs(t.list_avgdl / greatest(s.length::float8 / greatest(s.docs, 1), 1.0) - 1) > :drift)
    ORDER BY t.namespace, t.docs
    """
)
_LOCK_STATS = sa.text("SELECT docs, length FROM text_stats WHERE namespace = :ns FOR UPDATE")
_DROP_LISTS = sa.text("DELETE FROM text_top WHERE namespace = :ns AND lexeme = ANY(CAST(:lexemes AS text[]))")


@functools.lru_cache(maxsize=2)
def _fill_sql(match: bool) -> sa.TextClause:
    """Each term's list and floor. Postings are found through the full-text index (``match``)
    or by reading the whole namespace (faster once most of it is wanted).

    The floor is the key ranked just past the list size, and the list holds the keys above it
    only: a memory tied with the floor stays off, so a list memory can beat every other.
    """
    matching = "AND t.doc @@ CAST(:query AS tsquery)" if match else ""
    return sa.text(
        f"""
        WITH top AS (
            SELECT * FROM (
                SELECT lexeme, seq, key, row_number() OVER w AS rank, nth_value(key, :size + 1) OVER (
                           w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS floor
                FROM (SELECT u.lexeme, t.seq, {_key_sql(":cw", ":avgdl")} AS key
                      FROM memory_text t, unnest(t.doc) u
                      WHERE t.namespace = :ns {matching} AND u.lexeme = ANY(CAST(:lexemes AS text[]))) h
                WINDOW w AS (PARTITION BY lexeme ORDER BY key DESC)
            ) ranked WHERE rank <= :size
        ), listed AS (
            INSERT INTO text_top (namespace, lexeme, seq, key)
            SELECT :ns, lexeme, seq, key FROM top WHERE floor IS NULL OR key > floor
        )
        UPDATE text_terms t SET list_floor = f.floor, list_avgdl = :avgdl, list_cw = :cw, list_docs = t.docs
        FROM unnest(CAST(:lexemes AS text[])) AS c(lexeme) LEFT JOIN (
            SELECT lexeme, coalesce(max(floor), 0) AS floor FROM top GROUP BY lexeme
        ) f USING (lexeme)  -- a term with nothing found stays unlisted until it doubles
        WHERE t.namespace = :ns AND t.lexeme = c.lexeme
        """
    )


def build_lists(
    db: Database, context_weight: float, seconds: float | None = None, tuning: Tuning = Tuning()
) -> int:
    """(Re)build the lists that need it, for ``seconds`` at most, a few terms per transaction
    (None: all of them, in one pass over a namespace if it needs most of its lists). Returns
    how many were left for the next round."""
    with db.read() as conn:
        params = {"size": tuning.list_size, "cw": context_weight, "drift": LIST_DRIFT}
        stale = conn.execute(_STALE_LISTS, params).all()
    work: list[tuple[str, list[str], bool]] = []
    for namespace, group in groupby(stale, key=operator.itemgetter(0)):
        rows = list(group)
        if seconds is None and 4 * sum(r[2] for r in rows) > rows[0][3]:
            work.append((namespace, [r[1] for r in rows], False))
        else:
            work += [(namespace, lexemes, True) for lexemes in _chunks(rows)]
    started = time.monotonic()
    for done, (namespace, lexemes, match) in enumerate(work):
        if seconds is not None and time.monotonic() - started >= seconds:
            return sum(len(w[1]) for w in work[done:])
        with db.write() as conn:
            _build(conn, namespace, lexemes, context_weight, match, tuning.list_size)
    return 0


def _chunks(rows: Sequence[Sequence[Any]]) -> Iterator[list[str]]:
    """Lexemes of one namespace holding BUILD_POSTINGS postings at most (or a single term)."""
    lexemes, postings = list[str](), 0
    for _, lexeme, docs, _ in rows:
        if lexemes and postings + docs > BUILD_POSTINGS:
            yield lexemes
            lexemes, postings = [], 0
        lexemes.append(lexeme)
        postings += docs
    if lexemes:
        yield lexemes


def _build(
    conn: sa.Connection, namespace: str, lexemes: list[str], cw: float, match: bool, size: int
) -> None:
    # The namespace's statistics row, locked as every writer locks it: no memory is written
    # between reading the postings and setting the floors.
    docs, tokens = conn.execute(_LOCK_STATS, {"ns": namespace}).one()
    params = {
        "ns": namespace,
        "lexemes": lexemes,
        "query": " | ".join(_quote(x) for x in lexemes),
        "size": size,
        "cw": cw,
        "avgdl": max(tokens / max(docs, 1), 1.0),
        "k1": K1,
        "b": B,
    }
    conn.execute(_DROP_LISTS, params)
    conn.execute(_fill_sql(match), params)
