"""Flows under a real (temporary) Prefect API, and every flow deployable from ``prefect.yaml``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from stellar_core import ReorbitReport, SteppingClock, SystemClock, ValidationError, Zone
from stellar_core.errors import EmbeddingError
from tasks.lifecycle import reorbit_namespace

if TYPE_CHECKING:
    from tests.conftest import MemoryFactory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session (starting one takes seconds)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        # a loaded 2-core CI machine can need more than the default 30 s to start it
        with prefect_test_harness(server_startup_timeout=180):
            yield str(PREFECT_API_URL.value())


def zones(**sizes: int) -> dict[str, int]:
    return {z.value: sizes.get(z.value, 0) for z in Zone}


def test_reorbit_flow_returns_counts_per_namespace(
    prefect_api: str, open_memory: MemoryFactory, tmp_path: Path
) -> None:
    from flows.reorbit import reorbit_flow

    home = tmp_path / "home"
    now = open_memory(home, clock=SystemClock())
    now.store_many(["Ingrid approves every command plan", "Skarvik is down on Tuesdays"])
    now.store_many(["HAL-4 flies on three wheels"], namespace="fleet")
    # stored long ago by an agent whose clock says so, never recalled: drifts out, is forgotten
    then = open_memory(home, clock=SteppingClock(start=1_600_000_000))
    then.store("A stale note nobody needs", importance=0.0, namespace="fleet")

    result = reorbit_flow(home=str(home))

    assert result == {
        "default": {
            "scored": 2,
            "moved_inward": 0,
            "moved_outward": 0,
            "forgotten": 0,
            "purged": 0,
            "zones": zones(inner=2),
        },
        "fleet": {
            "scored": 2,
            "moved_inward": 0,
            "moved_outward": 1,
            "forgotten": 1,
            "purged": 0,
            "zones": zones(inner=1),
        },
    }
    assert reorbit_flow(namespaces=["fleet", "nobody"], home=str(home)) == {
        "fleet": {
            "scored": 1,
            "moved_inward": 0,
            "moved_outward": 0,
            "forgotten": 0,
            "purged": 0,
            "zones": zones(inner=1),
        },
        "nobody": {
            "scored": 0,
            "moved_inward": 0,
            "moved_outward": 0,
            "forgotten": 0,
            "purged": 0,
            "zones": zones(),
        },
    }


class FlakyMemory:
    """Stands in for StellarMemory.reorbit: raises the given errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def reorbit(self, *, namespace: str) -> ReorbitReport:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ReorbitReport(namespace, 0, 0, 0, 0, 0, zones(), 0.0)  # type: ignore[arg-type]


def test_reorbit_task_retries_transient_errors_only(prefect_api: str) -> None:
    task = reorbit_namespace.with_options(retry_delay_seconds=0)

    def run(memory: FlakyMemory) -> ReorbitReport:
        @flow
        def reorbit_ops() -> ReorbitReport:
            return task(memory, "ops")  # type: ignore[arg-type]

        return reorbit_ops()

    flaky = FlakyMemory(EmbeddingError("timeout"), EmbeddingError("timeout"))
    assert run(flaky).namespace == "ops"
    assert flaky.calls == 3  # two retries

    broken = FlakyMemory(ValidationError("bad namespace"))
    with pytest.raises(ValidationError):
        run(broken)
    assert broken.calls == 1  # a permanent error is not retried


def flows_in_package() -> dict[str, Flow[Any, Any]]:
    """``flows/<file>.py:<name>`` -> every ``@flow`` defined in the ``flows`` package."""
    found: dict[str, Flow[Any, Any]] = {}
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for name, obj in vars(module).items():
            if isinstance(obj, Flow) and obj.fn.__module__ == module.__name__:
                found[f"flows/{path.name}:{name}"] = obj
    return found


def test_every_flow_has_a_deployment_whose_entrypoint_loads() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["entrypoint"]: d for d in config["deployments"]}
    flows = flows_in_package()
    assert flows, "no flows found"
    for entrypoint, flow_obj in flows.items():
        assert entrypoint in deployments, f"{entrypoint} has no deployment in prefect.yaml"
        deployment = deployments[entrypoint]
        assert deployment["work_pool"]["name"] == "stellar-process"
        assert deployment["schedules"], f"{entrypoint} has no schedule"
        loaded = load_flow_from_entrypoint(str(ROOT / entrypoint))
        assert loaded.name == flow_obj.name


def test_prefect_yaml_deploys_to_a_real_server(prefect_api: str) -> None:
    """``prefect --no-prompt deploy --all`` as an operator runs it, against the test server."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="stellar-process", type="process"))
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("reorbit/reorbit")
    assert deployment.entrypoint == "flows/reorbit.py:reorbit_flow"
    assert deployment.work_pool_name == "stellar-process"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 * * * *"]  # type: ignore[union-attr]


def test_stellar_core_never_imports_prefect() -> None:
    code = (
        "import sys, stellar_core, stellar_core.connectors.files; "
        "sys.exit('prefect' in sys.modules or 'streamlit' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
