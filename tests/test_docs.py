"""The README's code and the public API stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import stellar_core

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(tmp_path: Path) -> None:
    """The agent example in the README runs as written against a fresh data directory."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    env = {**os.environ, "STELLAR_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    for code in blocks:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "stellar.db").exists()


def test_public_api_is_sorted_and_complete() -> None:
    names = stellar_core.__all__
    assert names == sorted(names)
    for name in names:  # the jobs load on first use; every name must resolve
        assert getattr(stellar_core, name) is not None, name
    public = {n for n in vars(stellar_core) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(stellar_core, n)).__name__ == "module"}
    assert set(names) == public - modules - {"TYPE_CHECKING", "Any"}


def test_importing_stellar_core_does_not_load_the_jobs_libraries() -> None:
    """An agent that only stores and recalls does not pay for the connectors or torch."""
    heavy = ("trafilatura", "watchdog", "torch", "faiss", "networkx")
    code = f"import sys, stellar_core; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_every_cli_command_is_in_the_readme() -> None:
    from stellar_core.cli import COMMANDS

    readme = (ROOT / "README.md").read_text()
    missing = [
        name for name in COMMANDS if not re.search(rf"^stellar [^\n]*\b{re.escape(name)}\b", readme, re.M)
    ]
    assert not missing, f"commands the README's examples do not show: {missing}"


def test_makefile_targets_named_in_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", (ROOT / "README.md").read_text(), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_compose_file_configures_real_settings_and_the_deployed_pool() -> None:
    import yaml

    from stellar_core import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "prefect-server", "worker", "dashboard"} <= set(services)
    assert "shared_buffers=${PG_SHARED_BUFFERS" in " ".join(services["postgres"]["command"])
    fields = set(Settings.model_fields)
    for name in [*services["worker"]["environment"], *services["dashboard"]["environment"]]:
        if name.startswith("STELLAR_"):
            assert name.removeprefix("STELLAR_").lower() in fields, name
    assert services["dashboard"]["environment"]["STELLAR_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["dashboard"]["command"] == ["python", "-m", "dashboard"]
    pools = {
        d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    }
    command = " ".join(compose["services"]["worker"]["command"])
    assert all(f"--pool {pool}" in command for pool in pools)


def test_every_setting_the_docs_name_exists() -> None:
    """An operator copies variable names from the README and prefect.yaml: each must be real."""
    from stellar_core import Settings

    fields = set(Settings.model_fields)
    for doc in ("README.md", "prefect.yaml", "docker-compose.yml"):
        # (not ${STELLAR_...}: docker compose interpolates those itself)
        named = set(re.findall(r"(?<!\$\{)\bSTELLAR_([A-Z0-9_]+)", (ROOT / doc).read_text()))
        assert named, doc
        unknown = {n for n in named if n.lower() not in fields and not n.endswith("_")}
        assert not unknown, f"{doc} names settings that do not exist: {sorted(unknown)}"


def test_the_readme_tells_operators_where_worker_settings_go() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Running the pipeline on a Prefect server") :]
    for needed in ("STELLAR_HOME", "STELLAR_DATABASE_URL", "STELLAR_WEB_ALLOW_HOSTS", "job_variables"):
        assert needed in section, needed


def test_the_readme_layout_names_every_module() -> None:
    """A newcomer finds every module in the layout section, with a line on what it does."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Benchmarks")]
    modules = {p.stem for p in (ROOT / "stellar_core").rglob("*.py") if "migrations" not in p.parts}
    modules -= {"__init__"}
    missing = {m for m in modules if not re.search(rf"\b{m}(\.py)?\b", layout)}
    assert not missing, f"the README's layout does not name {sorted(missing)}"
