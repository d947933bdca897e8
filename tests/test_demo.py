"""The main job (`make run`): it runs from the repo root, twice, and the second run adds nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZONES = ("Core", "Inner", "Outer", "Belt", "Cloud")


def run_demo(home: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--home", str(home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ingested(report: str) -> tuple[int, int, int, int]:
    found = re.search(r"(\d+) files -> (\d+) chunks: (\d+) new memories, (\d+) files unchanged", report)
    assert found, report
    files, chunks, new, unchanged = map(int, found.groups())
    return files, chunks, new, unchanged


def test_demo_runs_twice_and_the_second_run_adds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "demo home"
    first = run_demo(home)
    files, chunks, new, unchanged = ingested(first)
    assert files == 6 and chunks > 20 and new == chunks and unchanged == 0
    sizes = {z: int(n) for z, n in re.findall(r"^\s+(\w+)\s+#*\s+(\d+)$", first, re.MULTILINE)}
    assert list(sizes) == list(ZONES), first
    assert sum(sizes.values()) >= chunks  # the chunks, and the summaries of long files
    assert all(sizes.values())  # small demo capacities spread the corpus over every zone
    assert first.count("\n? ") >= 2  # sample questions, each with its hits
    assert re.search(r"^\s+\d\.\d{3}\s+(core|inner|outer|belt|cloud)\s+\S", first, re.MULTILINE)
    assert re.search(r"^summarise: [1-9]\d* summaries written", first, re.MULTILINE), first

    second = run_demo(home)
    assert ingested(second) == (6, chunks, 0, 6)
    assert "summarise: 0 summaries written" in second
    assert all(zone in second for zone in ZONES)
    assert (home / "stellar.db").is_file()
