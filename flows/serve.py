"""Serve every deployment of ``prefect.yaml`` from this one process: no work pool, no worker.

    python -m flows.serve          # or: make serve

For the embedded default on one machine. The schedules, parameters and limits are read from
``prefect.yaml``, so what runs here is what ``prefect deploy`` would deploy. Prefect needs an
API: a server (``prefect server start``, then ``PREFECT_API_URL``) or, with none configured,
the temporary one Prefect starts itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

ROOT = Path(__file__).resolve().parents[1]


def deployments(config: Path = ROOT / "prefect.yaml") -> list[RunnerDeployment]:
    """The deployments of ``prefect.yaml``, ready to serve."""
    out = []
    for d in yaml.safe_load(config.read_text())["deployments"]:
        path, name = d["entrypoint"].split(":")  # flows/x.py:y_flow -> flows.x, y_flow
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
        out.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                tags=d.get("tags"),
                parameters=d.get("parameters") or {},
                schedules=[_schedule(s) for s in d.get("schedules") or []],
                concurrency_limit=d.get("concurrency_limit"),
            )
        )
    return out


def _schedule(s: dict[str, Any]) -> Schedule:
    common = {"timezone": s.get("timezone"), "active": s.get("active", True)}
    if "cron" in s:
        return Cron(s["cron"], **common)
    return Interval(s["interval"], **common)


if __name__ == "__main__":
    serve(*deployments())
