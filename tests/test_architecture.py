"""The architecture holds: import contracts (import-linter, configured in pyproject.toml) and
a deliberate public API."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import stellar_core
from stellar_core import errors

ROOT = Path(__file__).resolve().parents[1]
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINT, "--no-cache"], cwd=where, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_import_contracts_are_kept() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def test_a_planted_violation_breaks_a_contract(tmp_path: Path) -> None:
    """A storage module reaching up to the facade (a cycle, and the wrong way down the layers)
    must fail the check, or the check guards nothing."""
    for part in ("stellar_core", "flows", "tasks", "dashboard"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    records = tmp_path / "stellar_core" / "store" / "records.py"
    records.write_text(records.read_text() + "\nfrom stellar_core.memory import StellarMemory  # planted\n")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout
    assert re.search(r"stellar_core\.store\.records -> stellar_core\.memory", done.stdout), done.stdout
    assert "BROKEN" in done.stdout


def test_every_type_the_api_returns_and_every_error_is_exported() -> None:
    public = set(stellar_core.__all__)
    returned: set[str] = set()
    for name, method in inspect.getmembers(stellar_core.StellarMemory, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(method)
        returned |= {
            t.__name__ for t in _named(hints.get("return")) if t.__module__.startswith("stellar_core")
        }
    assert returned <= public, returned - public
    raised = {n for n, x in vars(errors).items() if isinstance(x, type) and issubclass(x, Exception)}
    assert raised <= public, raised - public
    for name in sorted(raised):  # the tree in errors.py's docstring names every one
        assert name in (errors.__doc__ or ""), name


def _named(hint: object) -> list[type]:
    if isinstance(hint, type):
        return [hint]
    return [t for arg in typing.get_args(hint) for t in _named(arg)]
