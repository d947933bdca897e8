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
    public = {n for n in vars(stellar_core) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(stellar_core, n)).__name__ == "module"}
    assert set(names) == public - modules


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
    assert (ROOT / services["dashboard"]["command"][2]).is_file()  # streamlit run <the app>
    pools = {
        d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    }
    command = " ".join(compose["services"]["worker"]["command"])
    assert all(f"--pool {pool}" in command for pool in pools)
