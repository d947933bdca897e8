"""The main job: the Prefect pipeline on the embedded default, over the sample corpus.

    python -m examples.demo [--home DIR]

ingest_files (the corpus) -> a few recalls -> maintenance (summarise -> dedup -> reorbit ->
forget), all real flows run by Prefect in this process (Prefect starts a temporary API of its
own when no server is configured): no server to set up and no internet.

The demo namespace gets small zone capacities, so that a corpus of a few dozen chunks spreads
over the whole solar system the way thousands of memories would: a full zone pushes its
weakest members one zone outwards. Running it again adds nothing (unchanged files are skipped
by their hash) but recalls the same questions again, so their answers move further inwards.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

# Before Prefect is imported: the temporary API it starts would try to send usage statistics,
# and this job promises to need no network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flows.ingest import ingest_files_flow
from flows.maintenance import maintenance_flow
from stellar_core import NotFoundError, RecallHit, StellarMemory, Zone, snippet

CORPUS = Path(__file__).resolve().parent / "corpus"
NAMESPACE = "demo"
CAPACITIES = {"core": 3, "inner": 6, "outer": 10, "belt": 10}  # Cloud takes the rest
QUESTIONS = (
    "Why did HAL-4 enter safe mode?",
    "Who is paged first when a satellite has a problem at night?",
    "Why did the team move HAL-5 and HAL-6 downlinks to X-band?",
)
ROUNDS = 4  # each recall of a memory raises its recall count, and with it its score
BAR_WIDTH = 30


def main(argv: list[str] | None = None) -> None:
    """Run the pipeline against the memory in ``--home`` and print a short report."""
    parser = argparse.ArgumentParser(description="Stellar Memory demo: the pipeline on the sample corpus.")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(".stellar/demo"),
        help="data directory of the demo memory (default: .stellar/demo)",
    )
    args = parser.parse_args(argv)
    home = str(args.home)
    logging.getLogger("prefect").setLevel(logging.WARNING)  # the report below says what happened
    with StellarMemory(home, namespace=NAMESPACE, background=False) as mem:
        mem.configure_zones(capacities=CAPACITIES)
    ingested = ingest_files_flow(paths=[str(CORPUS)], namespace=NAMESPACE, home=home)
    with StellarMemory(home, namespace=NAMESPACE, background=False) as mem:
        for _ in range(ROUNDS):
            answers = {q: mem.recall(q, k=3) for q in QUESTIONS}
    upkeep = maintenance_flow(namespaces=[NAMESPACE], home=home)
    with StellarMemory(home, namespace=NAMESPACE, background=False) as mem:
        hit_ids = {hit.memory.id for hits in answers.values() for hit in hits}
        zones = {}
        for memory_id in hit_ids:
            try:
                zones[memory_id] = mem.get(memory_id).zone.value
            except NotFoundError:  # merged into a near-duplicate by dedup
                zones[memory_id] = "merged"
    print(f"Stellar Memory demo: home {args.home}, namespace {NAMESPACE!r}\n")
    print_ingest(ingested)
    print_upkeep(upkeep)
    for question, hits in answers.items():
        print_hits(question, hits, zones)


def print_ingest(result: dict[str, Any]) -> None:
    """Files and chunks, and how many were new."""
    print(
        f"ingest_files: {result['sources']} files -> {result['chunks']} chunks: "
        f"{result['new']} new memories, {result['unchanged']} files unchanged"
    )
    for skipped in result["skipped"]:
        print(f"  skipped {skipped['source']}: {skipped['reason']}")


def print_upkeep(result: dict[str, Any]) -> None:
    """What each maintenance step did, and the zones after reorbit as a bar chart."""
    summary, dedup = result["summarise"][NAMESPACE], result["dedup"][NAMESPACE]
    orbit, forget = result["reorbit"][NAMESPACE], result["forget"][NAMESPACE]
    print(f"summarise: {summary['created']} summaries written, {summary['unchanged']} current")
    print(f"dedup: {dedup['merged']} near-duplicates merged into {dedup['clusters']} memories")
    print(
        f"reorbit: {orbit['scored']} scored, {orbit['moved_inward']} moved inward, "
        f"{orbit['moved_outward']} moved outward, {orbit['forgotten']} forgotten"
    )
    print(f"forget: {forget['forgotten']} forgotten, {forget['purged']} purged\n")
    most = max(orbit["zones"].values(), default=0) or 1
    for zone in Zone:
        n = orbit["zones"].get(zone.value, 0)
        bar = "#" * round(BAR_WIDTH * n / most)
        print(f"  {zone.value.capitalize():<6} {bar:<{BAR_WIDTH}} {n}")
    print()


def print_hits(question: str, hits: list[RecallHit], zones: dict[str, str]) -> None:
    """A question and its best hits: relevance, zone after reorbit, where the memory came from
    and the part of it that answers."""
    print(f"? {question}")
    for hit in hits:
        print(f"  {hit.relevance:.3f}  {zones[hit.memory.id]:<6}  {hit.memory.origin or '(stored)'}")
        print(f"                 {snippet(hit.memory.content, question, 100)}")
    print()


if __name__ == "__main__":
    main()
