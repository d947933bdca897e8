"""Schedules fire: the project's deployments, on a real ``prefect server start``, create runs on
their own and those runs complete, through a process worker and through ``flows/serve.py``.

Guards the dependency set as much as the code: with SQLAlchemy 2.1 Prefect 3.8's scheduler
failed every minute and no scheduled run was ever created, while every other test passed.
The server's scheduler loop runs every 2 s here instead of every 60 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stellar_core import StellarMemory
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server with its own database; the environment its clients need."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()
            time.sleep(0.5)
        yield env
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def every_few_seconds(tmp_path: Path, home: Path, corpus: Path, name: str) -> Path:
    """The project's prefect.yaml with only its `files` deployment (renamed: each test its own),
    on a 5-second interval, its memory set the way the README tells operators to: in the
    deployment's job variables."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    files = next(d for d in config["deployments"] if d["name"] == "files")
    files["name"] = name
    files["schedules"] = [{"interval": 5}]
    files["parameters"] = {"paths": [str(corpus)]}
    files["work_pool"] = {**files["work_pool"], "job_variables": {"env": {"STELLAR_HOME": str(home)}}}
    config["deployments"] = [files]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def a_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "rota.md").write_text("# Rota\n\nDmitri is on call for Skarvik this week.\n")
    return corpus


def wait_for_a_scheduled_run(env: dict[str, str], deployment: str, seconds: float) -> Any:
    """The first run the scheduler created for the deployment, once it has finished."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import ObjectNotFound

    deadline, runs = time.monotonic() + seconds, []
    with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
        while time.monotonic() < deadline:
            try:  # a process that serves it registers it once it has started
                target = client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                time.sleep(1)
                continue
            runs = [r for r in client.read_flow_runs() if r.deployment_id == target.id and r.auto_scheduled]
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            if done:
                return done[0]
            time.sleep(1)
    raise AssertionError(f"no scheduled run of {deployment} finished within {seconds:.0f} s: {runs}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:  # the process's own shutdown is Prefect's; the runs are tested
        proc.kill()
        return proc.communicate()[0]


def test_a_deployed_schedule_fires_and_a_worker_completes_the_run(
    prefect_server: dict[str, str], tmp_path: Path
) -> None:
    env, home = prefect_server, tmp_path / "home"
    config = every_few_seconds(tmp_path, home, a_corpus(tmp_path), "by-worker")
    prefect = [sys.executable, "-m", "prefect"]
    made = subprocess.run([*prefect, "work-pool", "create", "stellar-process", "--type", "process"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    deployed = subprocess.run(
        [*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    worker = subprocess.Popen(
        [*prefect, "worker", "start", "--pool", "stellar-process"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        run = wait_for_a_scheduled_run(env, "ingest_files/by-worker", seconds=240)
    finally:
        output = stop(worker)
    assert run.state.is_completed(), f"{run.state}\n{output[-3000:]}"
    with StellarMemory(home, background=False) as mem:  # where the job variables said
        assert "Dmitri" in mem.recall("who is on call for Skarvik?", k=1)[0].memory.content


def test_serve_runs_the_deployments_on_their_schedules(
    prefect_server: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    config = every_few_seconds(tmp_path, home, a_corpus(tmp_path), "served")
    script = f"from pathlib import Path; from prefect import serve; from flows.serve import deployments; " \
             f"serve(*deployments(Path({str(config)!r})))"  # fmt: skip
    served = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT, env={**prefect_server, "STELLAR_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        run = wait_for_a_scheduled_run(prefect_server, "ingest_files/served", seconds=240)
    finally:
        output = stop(served)
    assert run.state.is_completed(), f"{run.state}\n{output[-3000:]}"
    with StellarMemory(home, background=False) as mem:
        assert mem.stats().memories == 1
