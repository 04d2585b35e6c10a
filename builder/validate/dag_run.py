"""`airbuild run DAG_ID`: one DAG run end to end in the image's environment, in the sandbox.

The `astro run` equivalent without Docker: the image's environment layers (as `parse` uses
them) with the project's dags/, plugins/ and include/ read-only, a private AIRFLOW_HOME and
SQLite database in the sandbox's /tmp, the variables the user gave (the image's Env, `.env`,
`AIRFLOW_CONN_*` / `AIRFLOW_VAR_*`, then `airflow_settings.yaml`'s connections and variables),
and the network on unless asked otherwise: a DAG run talks to the services it uses.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from builder.common import masking
from builder.common.errors import BuildError
from builder.validate import dag_runner
from builder.validate.sandbox import run
from builder.validate.run import PROJECT_DIRS, ValidationInputs, project_job, scratch

LOG_LINES = 40


@dataclass
class DagRunResult:
    dag_id: str
    state: str                      # success | failed | error (no run: the DAG is missing or Airflow failed)
    run_id: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    log_tail: str = ""
    duration_s: float = 0.0
    sandbox: str = ""
    network: bool = True
    details: dict[str, Any] = field(default_factory=dict)  # available DAGs, import errors

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def to_json(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "state": self.state, "run_id": self.run_id, "tasks": self.tasks,
                "error": self.error, "log_tail": self.log_tail, "duration_s": self.duration_s,
                "sandbox": self.sandbox, "network": self.network, **self.details}


def run_dag(inputs: ValidationInputs, dag_id: str, conf: dict, network: bool, timeout_s: float) -> DagRunResult:
    with scratch(inputs, "run") as (work, place):
        shutil.copyfile(dag_runner.__file__, work / "dag_runner.py")
        (work / "request.json").write_text(json.dumps({
            "dag_id": dag_id, "conf": conf, "dags_folder": posixpath.join(place.workdir, "dags"),
            "log_lines": LOG_LINES, "log_path": posixpath.join(place.tmp, "airbuild-run.log")}))
        job = project_job(inputs, place, ["python3", posixpath.join(place.harness_dir, "dag_runner.py"),
                                          posixpath.join(place.harness_dir, "request.json")],
                          PROJECT_DIRS, work, timeout_s)
        job.network = network
        for name, value in _settings_environment(inputs).items():
            job.env.setdefault(name, value)  # what the user set wins over airflow_settings.yaml
        proc = run(job)
    try:
        document = masking.value(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise BuildError(f"the DAG run ended without a result (exit {proc.returncode}):\n"
                         f"{masking.text((proc.stderr or proc.stdout).strip()[-3000:])}") from None
    details = {k: document[k] for k in ("available", "import_errors", "traceback") if k in document}
    return DagRunResult(dag_id=dag_id, state=document.get("state", "error"), run_id=document.get("run_id"),
                        tasks=document.get("tasks", []), error=document.get("error"),
                        log_tail=document.get("log_tail", ""), duration_s=document.get("duration_s", 0.0),
                        sandbox=place.sandbox, network=network, details=details)


def _settings_environment(inputs: ValidationInputs) -> dict[str, str]:
    """airflow_settings.yaml's connections and variables, as the environment variables Airflow reads."""
    env = {}
    for conn_id, uri in inputs.connections.items():
        env[f"AIRFLOW_CONN_{_env_name(conn_id)}"] = uri
    for key, value in inputs.variables.items():
        env[f"AIRFLOW_VAR_{_env_name(key)}"] = value
    return env


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
