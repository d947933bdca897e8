"""What security costs: the access check, encryption and the audit log, and key rotation.

    python -m benchmarks.bench_security                 # 10k and 100k memories, SQLite
    python -m benchmarks.bench_security --sizes 10000 --backend postgres

For each size, two memories are loaded with the same corpus (bench_core's, with synthetic
vectors: embedding is left out) and measured in one sitting:
- ``plain``: the defaults (no access control, no audit log, nothing encrypted);
- ``secure``: access control on (the agent holds a writer grant), the audit log on, and every
  memory stored encrypted (AES-256-GCM, keyed search words).
Both are measured in turn, batch by batch and query by query, so that both see the same
machine. Printed: store_many throughput over the whole load, recall p50 / p95 (k=10), the access check
per call, a key rotation of every memory of the secure one (memories/s), and how much of the
text the keyed search words give away to frequency analysis.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.bench_core import SEED, Corpus, SyntheticEmbedder, database, percentiles_ms
from stellar_core import Settings, StellarMemory
from stellar_core.security import crypto

_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # as the index splits words
BATCH = 1_000
QUERIES = 300
AGENT = "bench-agent"


def load(plain: StellarMemory, secure: StellarMemory, items: list[dict[str, Any]]) -> tuple[float, float]:
    """Store every item in both, batch by batch in turn (so both see the same machine);
    memories per second of each."""
    spent = [0.0, 0.0]
    for i in range(0, len(items), BATCH):
        chunk = items[i : i + BATCH]
        for j, (mem, batch) in enumerate(
            ((plain, chunk), (secure, [{**x, "encrypted": True} for x in chunk]))
        ):
            started = time.perf_counter()
            mem.store_many(batch)
            spent[j] += time.perf_counter() - started
    return len(items) / spent[0], len(items) / spent[1]


def recall_ms(plain: StellarMemory, secure: StellarMemory, queries: list[str]) -> list[tuple[float, float]]:
    """(p50, p95) of each, query by query in turn."""
    times: list[list[float]] = [[], []]
    for mem in (plain, secure):
        mem.warm()  # the vector index built, as a long-running agent has it
        for q in queries[:20]:
            mem.recall(q, k=10)
    for q in queries:
        for j, mem in enumerate((plain, secure)):
            started = time.perf_counter()
            mem.recall(q, k=10)
            times[j].append(time.perf_counter() - started)
    return [percentiles_ms(t)[:2] for t in times]


def access_check_us(mem: StellarMemory, n: int = 200_000) -> float:
    """One ``check`` of a principal that holds a grant (what every call pays), in microseconds."""
    access = mem.engine.access
    assert access is not None
    access.check(AGENT, "recall", "default")
    started = time.perf_counter()
    for _ in range(n):
        access.check(AGENT, "recall", "default")
    return (time.perf_counter() - started) / n * 1e6


def frequency_attack(secure: StellarMemory, items: list[dict[str, Any]]) -> float:
    """What the keyed words give away to someone holding the database but no key: the share
    of word occurrences guessed right by matching the tokens' document frequencies, rank by
    rank, to the words' in another sample of the same kind of text (the attacker's guess at
    the language), measured against the truth."""
    with secure.engine.snapshot() as conn:
        rows = [
            t for (t,) in conn.exec_driver_sql("SELECT search_text FROM memories WHERE encrypted").all() if t
        ]
    token_df = Counter(tok for t in rows for tok in set(t.split()))
    other, _ = Corpus(seed=SEED + 1).memories(len(items), "o")
    word_df = Counter(w for x in other for w in set(_WORD.findall(x["content"].lower())))
    guess = dict(
        zip((t for t, _ in token_df.most_common()), (w for w, _ in word_df.most_common()), strict=False)
    )
    cipher = secure.engine.cipher
    assert cipher is not None
    truth: dict[str, str] = {}
    for x in items:
        words = list(dict.fromkeys(_WORD.findall(x["content"].lower())))
        truth.update(zip(cipher.query_tokens("default", words), words, strict=True))
    hits = sum(n for tok, n in token_df.items() if guess.get(tok) == truth.get(tok))
    return hits / max(1, sum(token_df.values()))


def run(size: int, backend: str, tmp: Path) -> dict[str, Any]:
    corpus = Corpus()
    items, vectors = corpus.memories(size, "s")
    queries, qvectors = corpus.queries(QUERIES)
    texts = [x["content"] for x in items] + queries
    embedder = SyntheticEmbedder(texts, __import__("numpy").concatenate([vectors, qvectors]))
    key_file = tmp / f"keys-{size}.json"
    crypto.write_key_file(key_file, "k1", {"k1": base64.b64encode(os.urandom(32)).decode()})
    secure_settings = Settings(
        access_control=True, audit_log=True, encryption_key_file=key_file, admins=["bench-admin"]
    )
    out: dict[str, Any] = {"size": size, "backend": backend}
    for name in ("plain", "secure"):
        (tmp / f"{name}-{size}").mkdir()
    with (
        database(backend, tmp / f"plain-{size}") as plain_url,
        database(backend, tmp / f"secure-{size}") as secure_url,
    ):
        plain = StellarMemory(plain_url, agent=AGENT, embedder=embedder)
        secure = StellarMemory(secure_url, agent=AGENT, embedder=embedder, settings=secure_settings)
        secure.store("seed", namespace="default", principal="bench-admin")
        secure.security.grant(AGENT, "default", "writer", principal="bench-admin")
        out["store_many_per_s"] = dict(zip(("plain", "secure"), load(plain, secure, items), strict=True))
        out["recall_ms"] = dict(zip(("plain", "secure"), recall_ms(plain, secure, queries), strict=True))
        out["access_check_us"] = access_check_us(secure)
        out["recovered"] = frequency_attack(secure, items)
        plain.close()
        secure.close()
        crypto.add_to_key_file(key_file)  # a new primary key: rotate everything to it
        rotating = StellarMemory(secure_url, agent="bench-admin", embedder=embedder, settings=secure_settings)
        started = time.perf_counter()
        done = rotating.security.rotate_keys(batch=1_000)
        out["rotation_per_s"] = done.resealed / (time.perf_counter() - started)
        rotating.close()
    return out


def report(r: dict[str, Any]) -> None:
    s, rc = r["store_many_per_s"], r["recall_ms"]
    print(f"\n== {r['size']:,} memories, {r['backend']} ==")
    print(f"store_many        plain {s['plain']:8,.0f} /s   secure {s['secure']:8,.0f} /s   "
          f"({100 * (s['plain'] / s['secure'] - 1):+.1f}% time)")  # fmt: skip
    print(f"recall p50 / p95  plain {rc['plain'][0]:.2f} / {rc['plain'][1]:.2f} ms   "
          f"secure {rc['secure'][0]:.2f} / {rc['secure'][1]:.2f} ms   "
          f"({100 * (rc['secure'][0] / rc['plain'][0] - 1):+.1f}% p50)")  # fmt: skip
    print(f"access check      {r['access_check_us']:.2f} us per call (aim <= 20 us)")
    print(f"key rotation      {r['rotation_per_s']:,.0f} memories/s")
    print(
        f"keyed words       {100 * r['recovered']:.0f}% of word occurrences recovered by frequency analysis"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            report(run(size, args.backend, Path(tmp)))


if __name__ == "__main__":
    main()
