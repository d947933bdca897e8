"""The main job: sample corpus -> memory -> recall -> reorbit -> where memories now orbit.

    python -m examples.demo [--home DIR]

The demo namespace gets small zone capacities, so that a corpus of a few dozen chunks spreads
over the whole solar system the way thousands of memories would: a full zone pushes its
weakest members one zone outwards. Running it again adds nothing (ingestion is idempotent)
but recalls the same questions again, so their answers move further inwards.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar_core import IngestResult, RecallHit, ReorbitReport, StellarMemory, Zone, ingest_path

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
    """Run the demo against the memory in ``--home`` and print a short report."""
    parser = argparse.ArgumentParser(description="Stellar Memory demo: ingest, recall, reorbit.")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(".stellar/demo"),
        help="data directory of the demo memory (default: .stellar/demo)",
    )
    args = parser.parse_args(argv)
    with StellarMemory(args.home, namespace=NAMESPACE, background=False) as mem:
        mem.configure_zones(capacities=CAPACITIES)
        ingested = ingest_path(mem, CORPUS)
        for _ in range(ROUNDS):
            answers = {q: mem.recall(q, k=3) for q in QUESTIONS}
        report = mem.reorbit()
        hit_ids = {hit.memory.id for hits in answers.values() for hit in hits}
        zones = {memory_id: mem.get(memory_id).zone for memory_id in hit_ids}
    print(f"Stellar Memory demo: home {args.home}, namespace {NAMESPACE!r}\n")
    print_ingest(ingested)
    print_zones(report)
    for question, hits in answers.items():
        print_hits(question, hits, zones)


def print_ingest(result: IngestResult) -> None:
    """Files and chunks, and how many were new."""
    print(
        f"Ingested {result.sources} files -> {result.chunks} chunks: "
        f"{result.new} new memories, {result.unchanged} files unchanged"
    )
    for path, reason in result.skipped:
        print(f"  skipped {path}: {reason}")


def print_zones(report: ReorbitReport) -> None:
    """The zone distribution after reorbit as a text bar chart."""
    print(
        f"Reorbit: {report.scored} scored, {report.moved_inward} moved inward, "
        f"{report.moved_outward} moved outward, {report.forgotten} forgotten\n"
    )
    most = max(report.zones.values(), default=0) or 1
    for zone in Zone:
        n = report.zones.get(zone, 0)
        bar = "#" * round(BAR_WIDTH * n / most)
        print(f"  {zone.value.capitalize():<6} {bar:<{BAR_WIDTH}} {n}")
    print()


def print_hits(question: str, hits: list[RecallHit], zones: dict[str, Zone]) -> None:
    """A question and its best hits: relevance, zone after reorbit, first line of the memory."""
    print(f"? {question}")
    for hit in hits:
        first = hit.memory.content.splitlines()[0]
        first = first if len(first) <= 64 else first[:61] + "..."
        print(f"  {hit.relevance:.3f}  {zones[hit.memory.id].value:<5}  {first}")
    print()


if __name__ == "__main__":
    main()
