"""Flows under a real (temporary) Prefect API, and every flow deployable from ``prefect.yaml``."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
import yaml
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.flows import load_flow_from_entrypoint

from stellar_core import ReorbitReport, StellarMemory, SteppingClock, SystemClock, ValidationError, Zone
from stellar_core.errors import EmbeddingError
from tasks.lifecycle import reorbit_namespace
from tests.services import Redis, free_port
from tests.sites import Site, reply

if TYPE_CHECKING:
    from tests.conftest import MemoryFactory

ROOT = Path(__file__).resolve().parents[1]


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


def run_outcome(state: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """What an operator sees of a finished run, read back through the Prefect API: its state,
    its persisted result, and the rows of the table artifact it left."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    tables = [a for a in artifacts if a.type == "table"]  # (the other one points at the result)
    assert run.state is not None and len(tables) == 1
    data = run.state.result(raise_on_failure=False)  # from the result store, not this process
    return run.state.type.value, data, json.loads(tables[0].data)  # type: ignore[arg-type]


def test_ingest_files_flow_ingests_the_rest_and_fails_for_a_missing_path(
    prefect_api: str, tmp_path: Path
) -> None:
    from flows.ingest import ingest_files_flow

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rota.md").write_text("# Rota\n\nDmitri is on call this week.\n")
    (docs / "broken.json").write_text('{"pass": ')
    home = str(tmp_path / "home")
    state = ingest_files_flow(paths=[str(docs), str(tmp_path / "missing")], home=home, return_state=True)
    kind, result, table = run_outcome(state)
    assert kind == "FAILED" and "1 of 2 sources failed" in str(state.message)
    assert (result["sources"], result["new"], list(result["failed"])) == (1, 1, [str(tmp_path / "missing")])
    reasons = {Path(x["source"]).name: x["reason"] for x in result["skipped"]}
    assert set(reasons) == {"broken.json", "missing"}  # a bad file in a folder: skipped, shown
    assert [(row["source"], row["outcome"]) for row in table] == [
        (str(docs), "ok"),
        (str(tmp_path / "missing"), "failed"),
    ]
    assert "broken.json" in table[0]["detail"]
    again = ingest_files_flow(paths=[str(docs)], home=home, return_state=True)
    kind, result, table = run_outcome(again)
    assert kind == "COMPLETED" and (result["new"], result["unchanged"]) == (0, 1)


def test_ingest_web_flow_fails_for_one_bad_page_and_stores_the_good(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest_web_flow

    page = ("<html><head><title>Rota</title></head><body><article><p>"
            + "Dmitri is on call for the Skarvik station during the whole week. " * 5
            + "</p></article></body></html>")  # fmt: skip
    with Site() as site:
        site.routes["/ok"] = reply(page)
        base = site.url("")
        monkeypatch.setenv("STELLAR_WEB_ALLOW_HOSTS", '["127.0.0.1"]')
        urls = [f"{base}/ok", f"{base}/missing"]
        state = ingest_web_flow(urls=urls, home=str(tmp_path / "home"), return_state=True)
        refused = ingest_web_flow(
            urls=["http://10.255.255.1/x"], home=str(tmp_path / "home"), return_state=True
        )
    kind, result, table = run_outcome(state)
    assert kind == "FAILED" and result["new"] >= 1
    assert list(result["failed"]) == [f"{base}/missing"] and "404" in result["failed"][f"{base}/missing"]
    assert [row["outcome"] for row in table] == ["ok", "failed"]
    assert refused.is_failed() and "1 of 1 sources failed" in str(refused.message)
    with get_client(sync_client=True) as client:  # what `prefect flow-run ls --state FAILED` asks
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState

        failed_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id]),
                state=FlowRunFilterState(type={"any_": ["FAILED"]}),  # type: ignore[arg-type]
            )
        )
    assert len(failed_runs) == 1


def test_ingest_api_flow_takes_sources_as_plain_json(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest_api_flow

    listing = json.dumps({"data": [{"id": 7, "name": "Skarvik", "status": "down on Tuesdays"}]})
    with Site() as site:
        site.routes["/stations"] = reply(listing, "application/json")
        base = site.url("")
        monkeypatch.setenv("STELLAR_WEB_ALLOW_HOSTS", '["127.0.0.1"]')
        source = {"url": f"{base}/stations", "items": "data", "key": "id", "fields": ["name", "status"]}
        bad = {"url": f"{base}/nothing-here", "items": "data"}
        state = ingest_api_flow(sources=[source, bad], home=str(tmp_path / "home"), return_state=True)
    kind, result, _ = run_outcome(state)
    assert kind == "FAILED" and (result["sources"], result["new"]) == (1, 1)
    assert list(result["failed"]) == [f"{base}/nothing-here"]
    with StellarMemory(tmp_path / "home", background=False) as mem:
        hit = mem.recall("when is Skarvik down?", k=1)[0].memory
    assert "down on Tuesdays" in hit.content and hit.source.type == "api"  # type: ignore[union-attr]


def test_a_bug_fails_the_run_with_its_traceback_not_as_a_line_of_data(
    prefect_api: str, tmp_path: Path
) -> None:
    """Only the project's own errors are an item's failure; anything else stops the run."""
    from flows.common import per_namespace

    def buggy(mem: StellarMemory, ns: str) -> None:
        raise ZeroDivisionError("a bug")

    @flow
    def upkeep(home: str) -> Any:
        with StellarMemory(home, background=False) as mem:
            return per_namespace(mem, ["a", "b"], buggy, lambda r: {})

    state = upkeep(home=str(tmp_path / "home"), return_state=True)
    assert state.is_failed()
    with pytest.raises(ZeroDivisionError, match="a bug"):
        state.result()


def test_maintenance_runs_every_step_per_namespace(
    prefect_api: str, open_memory: MemoryFactory, tmp_path: Path
) -> None:
    from flows.maintenance import maintenance_flow

    home = tmp_path / "home"
    mem = open_memory(home, clock=SystemClock())
    mem.store_many(["Ingrid approves every command plan", "Skarvik is down on Tuesdays"])
    result = maintenance_flow(home=str(home))
    assert list(result) == ["summarise", "dedup", "reorbit", "forget"]
    assert result["reorbit"]["default"]["scored"] == 2
    assert result["forget"]["default"] == {"forgotten": 0, "purged": 0}
    assert result["dedup"]["default"]["merged"] == 0
    assert result["summarise"]["default"]["created"] == 0

    bad = "x" * 300  # not a valid namespace: every step fails it, and goes on with the others
    state = maintenance_flow(namespaces=["default", bad], home=str(home), return_state=True)
    assert state.is_failed() and "summarise, dedup, reorbit, forget failed" in str(state.message)
    result = state.result(raise_on_failure=False)
    assert result["reorbit"]["default"]["scored"] == 2
    assert all("ValidationError" in result[step][bad]["error"] for step in result)


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


def deploy_all(api: str) -> None:
    """``prefect --no-prompt deploy --all`` as an operator runs it (the pool made if missing)."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="stellar-process", type="process"))
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": api},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prefect_yaml_deploys_to_a_real_server(prefect_api: str) -> None:
    deploy_all(prefect_api)
    with get_client(sync_client=True) as client:
        hourly = client.read_deployment_by_name("maintenance/hourly")
        reorbit = client.read_deployment_by_name("reorbit/reorbit")
    assert hourly.entrypoint == "flows/maintenance.py:maintenance_flow"
    assert hourly.work_pool_name == "stellar-process"
    assert [(s.schedule.cron, s.active) for s in hourly.schedules] == [("15 * * * *", True)]  # type: ignore[union-attr]
    assert [(s.schedule.cron, s.active) for s in reorbit.schedules] == [("0 * * * *", False)]  # type: ignore[union-attr]


def test_serve_builds_every_deployment_of_prefect_yaml() -> None:
    from flows.serve import deployments

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    served = {f"{d.flow_name}/{d.name}": d for d in deployments()}
    assert len(served) == len(config)
    hourly = served["maintenance/hourly"]
    assert [(s.schedule.cron, s.active) for s in hourly.schedules] == [("15 * * * *", True)]  # type: ignore[union-attr]
    assert served["ingest_files/files"].parameters == {"paths": ["examples/corpus"]}
    sync = served["sync/sync"]  # often, once turned on; off by default (it needs STELLAR_SYNC_URL)
    assert [(s.schedule.interval.total_seconds(), s.active) for s in sync.schedules] == [(60, False)]  # type: ignore[union-attr]
    assert sync.concurrency_limit == 1


@pytest.mark.slow
def test_a_worker_runs_a_deployment_and_the_memories_land_in_the_store(
    prefect_api: str, tmp_path: Path
) -> None:
    """The operator's path end to end: deploy from prefect.yaml, a process worker, then
    ``prefect deployment run``; the flow runs in the worker's subprocess."""
    deploy_all(prefect_api)
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "rota.md").write_text("# Rota\n\nDmitri is on call for Skarvik this week.\n")
    home = tmp_path / "home"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    params = json.dumps({"paths": [str(corpus)], "home": str(home)})
    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "ingest_files/files", "--params", params],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout)
    assert run_id, run.stdout
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "stellar-process"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        state = wait_for_final_state(run_id.group(1), timeout=300)
    finally:
        worker.terminate()
        try:
            output = worker.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # the worker's own shutdown is Prefect's; the run is tested
            worker.kill()
            output = worker.communicate()[0]
    assert state.is_completed(), f"{state}\n{output[-3000:]}"
    with StellarMemory(home, background=False) as mem:
        hits = mem.recall("who is on call for Skarvik?", k=1)
    assert hits and "Dmitri" in hits[0].memory.content
    assert hits[0].memory.source.type == "file"  # type: ignore[union-attr]


def wait_for_final_state(flow_run_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.is_final():
                return state
            assert time.monotonic() < deadline, f"flow run still {state} after {timeout:.0f} s"
            time.sleep(1)


def test_stellar_core_never_imports_prefect() -> None:
    code = (
        "import sys, stellar_core, stellar_core.connectors.files; "
        "sys.exit('prefect' in sys.modules or 'streamlit' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_rotate_keys_flow_reseals_every_namespace_and_fails_for_a_missing_key(
    prefect_api: str, open_memory: MemoryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.rotate_keys import rotate_keys_flow
    from stellar_core import Settings
    from stellar_core.security import crypto

    home = tmp_path / "home"
    k1, k2 = crypto.new_key(), crypto.new_key()
    old = open_memory(home, settings=Settings(encryption_keys={"k1": k1}))
    old.store_many([{"content": f"secret {i}", "encrypted": True} for i in range(5)])
    old.store("the fleet's launch code is 0000", encrypted=True, namespace="fleet")
    key_file = tmp_path / "keys.json"
    crypto.write_key_file(key_file, "k2", {"k2": k2})  # k1 forgotten: the run must fail, change nothing
    monkeypatch.setenv("STELLAR_ENCRYPTION_KEY_FILE", str(key_file))
    state = rotate_keys_flow(home=str(home), return_state=True)
    assert state.is_failed()
    assert old.security.key_usage() == {"k1": 6}
    crypto.write_key_file(key_file, "k2", {"k1": k1, "k2": k2})
    result = rotate_keys_flow(home=str(home), batch=2)
    assert result == {
        "default": {"resealed": 5, "usage": {"k2": 5}},
        "fleet": {"resealed": 1, "usage": {"k2": 1}},
    }


def test_sync_flow_carries_changes_to_another_replica_and_trims_what_both_applied(
    prefect_api: str,
    redis_server: Redis,
    open_memory: MemoryFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.sync import sync_flow

    monkeypatch.setenv("STELLAR_SYNC_URL", redis_server.url())
    monkeypatch.setenv("STELLAR_SYNC_PREFIX", f"flows-{tmp_path.name}")  # streams of this test only
    monkeypatch.setenv("STELLAR_SYNC_BATCH", "5")
    here, there = tmp_path / "here", tmp_path / "there"
    mem = open_memory(here, clock=SystemClock())
    notes = mem.store_many([f"Launch checklist item {i}: check the valves" for i in range(12)])
    fleet = mem.store("HAL-4 flies on three wheels", namespace="fleet")

    state = sync_flow(home=str(here), return_state=True)
    kind, result, table = run_outcome(state)
    assert kind == "COMPLETED" and result["publish"] == {"published": 13} and result["trim"] == {"trimmed": 0}
    assert [(r["step"], r["outcome"]) for r in table] == [("publish", "ok"), ("apply", "ok"), ("trim", "ok")]
    # Its own events come back from the streams and apply nothing: read to the end all the same
    # (three batches, and a fourth that finds nothing more).
    assert result["apply"]["applied"] == 0 and result["apply"]["own"] == 13
    assert result["apply"]["batches"] == 4
    assert all(s.lag_events == 0 and s.unpublished == 0 for s in mem.sync.status())

    monkeypatch.setenv("STELLAR_SYNC_RETENTION_HOURS", "1e-9")  # trim what every replica applied
    result = sync_flow(home=str(there))
    assert result["publish"] == {"published": 0}
    assert result["apply"] == {"batches": 4, "applied": 13, "duplicates": 0, "waiting": 0, "refused": 0,
                               "conflicts": 0, "own": 0}  # fmt: skip
    assert 0 < result["trim"]["trimmed"] <= 13  # (a stream may keep its newest entry)
    with StellarMemory(there, background=False) as copy:
        assert copy.get(notes[7].id).content == notes[7].content
        assert copy.get(fleet.id, namespace="fleet").content == "HAL-4 flies on three wheels"
    assert sync_flow(home=str(there), namespaces=["fleet"])["apply"]["applied"] == 0  # nothing twice


def test_sync_flow_without_redis_fails_after_its_retries_and_loses_nothing(
    prefect_api: str,
    redis_server: Redis,
    open_memory: MemoryFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import flows.sync
    from flows.sync import sync_flow
    from tasks.sync import publish_changes

    monkeypatch.setattr(flows.sync, "publish_changes", publish_changes.with_options(retry_delay_seconds=0))
    monkeypatch.setenv("STELLAR_SYNC_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    monkeypatch.setenv("STELLAR_SYNC_PREFIX", f"flows-{tmp_path.name}")
    home = tmp_path / "home"
    mem = open_memory(home, clock=SystemClock())
    mem.store("The antenna in Troll needs a new bearing")

    state = sync_flow(home=str(home), return_state=True)
    kind, result, table = run_outcome(state)
    assert kind == "FAILED"
    assert "1 of 3 steps failed: publish (SyncUnavailable: Redis at" in str(state.message)
    assert "does not answer" in result["publish"]["error"]
    assert result["apply"] == result["trim"] == {"skipped": "not run: Redis does not answer"}
    assert [row["outcome"] for row in table] == ["failed", "skipped", "skipped"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert [r.run_count for r in runs] == [3]  # tried three times: Redis may have been restarting
    assert mem.sync.status()[0].unpublished == 1  # still in the outbox

    monkeypatch.delenv("STELLAR_SYNC_URL")
    unset = sync_flow(home=str(home), return_state=True)
    assert unset.is_failed() and "STELLAR_SYNC_URL" in str(unset.message)
    assert unset.result(raise_on_failure=False)["apply"] == {"skipped": "not run: sync is not configured"}

    monkeypatch.setenv("STELLAR_SYNC_URL", redis_server.url())  # Redis is back: published now
    assert sync_flow(home=str(home))["publish"] == {"published": 1}
