"""DAG validation wired into a build: inputs from the plan and manifest, the gate before shipping."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from builder.project import dotenv
from builder.common import masking
from builder.common.errors import AirbuildError, InputError
from builder.engine.plan import Plan
from builder.actions.python.target import detect_python, installed_distributions
from builder.actions.steps import BuildContext
from builder.validate.memory import ValidationMemory
from builder.validate.run import Limits, Report, SharedRecords, ValidationInputs, validate
from builder.project.yaml_source import load_yaml


class ValidationFailed(AirbuildError):
    """DAGs failed to import: nothing was shipped (exit 1)."""

    exit_code = 1

    def __init__(self, report: Report):
        self.report = report
        failing = [f.file for f in report.files if f.failed] + [f"duplicate dag_id {d['dag_id']}"
                                                              for d in report.duplicates] + \
            [f"astro test {case.name}" for case in report.astro_tests if case.failed] + \
            ([report.reason] if report.reason else [])
        super().__init__(f"DAG validation failed ({', '.join(failing[:5])}{', ...' if len(failing) > 5 else ''}); "
                         "nothing was written. Fix them, list them in validation.allowed_failures, or pass --force")


AIRFLOW_DISTRIBUTIONS = {"apache-airflow", "apache-airflow-core"}


def check_dags(ctx: BuildContext, plan: Plan, inputs: ValidationInputs | None = None,
               astro_tests: bool = False, memory: ValidationMemory | None = None,
               shared: SharedRecords | None = None) -> Report:
    """The planned build's DAGs imported against its environment layers, or against `inputs`' (deploy --dags:
    the target image's); with `astro_tests`, Astro's own parse test too (parse, deploy). `memory`: what the
    caller's earlier validations left (watch), else a fresh one; `shared`: the team's cache of results."""
    memory = memory or ValidationMemory()
    # Asked before the inputs are gathered (they hash every DAG and support file): an image without Airflow
    # costs a large project nothing more.
    missing = _without_airflow(ctx, inputs.env_layers if inputs else environment_layers(ctx, plan), memory)
    if missing:
        return Report("skipped", missing)
    inputs = dataclasses.replace(inputs or validation_inputs(ctx, plan), astro_tests=astro_tests, shared=shared)
    return validate(inputs, memory)


def _without_airflow(ctx: BuildContext, env_layers: list, memory: ValidationMemory) -> str | None:
    """Why DAGs cannot be imported against this image (read from its files), or None."""
    chain = "|".join(layer.diff_id for layer in env_layers)
    if chain not in memory.environments:
        memory.environments[chain] = _check_environment(ctx, env_layers)
    return memory.environments[chain]


def _check_environment(ctx: BuildContext, env_layers: list) -> str | None:
    image = dataclasses.replace(ctx.base, layers=tuple(env_layers))
    try:
        target = detect_python(image, ctx.store, ctx.platform)
    except InputError:
        return "the image has no Python 3 interpreter"
    if not AIRFLOW_DISTRIBUTIONS & installed_distributions(image, ctx.store, target).keys():
        return "Airflow is not installed in the image (add apache-airflow to requirements.txt, or use a runtime base)"
    return None


def environment_layers(ctx: BuildContext, plan: Plan) -> list:
    """The base's layers and the plan's environment layers (all but the project's files), bottom first."""
    return list(ctx.base.layers) + [layer.record for layer in plan.layers if not layer.step.project_content]


def validation_inputs(ctx: BuildContext, plan: Plan) -> ValidationInputs:
    """What the sandbox needs from a planned build whose environment layers are in the store."""
    settings = ctx.manifest.validation
    env_layers = environment_layers(ctx, plan)
    dag_hashes = {path[len("dags/"):]: entry.digest for path, entry in ctx.tree.entries.items()
                  if path.startswith("dags/") and entry.kind == "file"}
    # From the walk the build already made (content hashes), not a second walk of those directories.
    support = hashlib.sha256("".join(
        f"{path}\0{entry.identity}\n" for path, entry in sorted(ctx.tree.entries.items())
        if path.startswith(("plugins/", "include/")) or path.endswith("/.airflowignore")).encode()).hexdigest()
    variables, connections = airflow_settings(ctx.project / "airflow_settings.yaml")
    env_file = dotenv.load(ctx.env_file or ctx.project / ".env", required=ctx.env_file is not None)
    return ValidationInputs(
        project=ctx.project, store=ctx.store, env_layers=env_layers, workdir=ctx.manifest.workdir,
        dag_hashes=dag_hashes, support_hash=support,
        limits=Limits(settings.timeout_s, settings.memory_mb, settings.processes, settings.cpu_s),
        allowed_failures=tuple(settings.allowed_failures), safe_mode=settings.safe_mode,
        variables=variables, connections=connections, sandbox=ctx.sandbox or settings.sandbox,
        workers=ctx.validation_workers or settings.workers,
        image_env=plan.config.env_dict(), dotenv=env_file.values, warnings=env_file.warnings)


def airflow_settings(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Variables and connection URIs from Astro's `airflow_settings.yaml`: placeholders for DAG parsing."""
    if not path.is_file():
        return {}, {}
    data = load_yaml(path).data or {}
    section = data.get("airflow") or {}
    variables = {str(v["variable_name"]): str(v.get("variable_value", "")) for v in section.get("variables") or []
                 if isinstance(v, dict) and v.get("variable_name")}
    connections = {}
    for conn in section.get("connections") or []:
        if not isinstance(conn, dict) or not conn.get("conn_id"):
            continue
        auth = conn.get("conn_login") or ""
        if conn.get("conn_password"):
            auth += f":{conn['conn_password']}"
            masking.add(str(conn["conn_password"]))
        host = (f"{auth}@" if auth else "") + str(conn.get("conn_host") or "")
        if conn.get("conn_port"):
            host += f":{conn['conn_port']}"
        connections[str(conn["conn_id"])] = f"{conn.get('conn_type') or 'generic'}://{host}/{conn.get('conn_schema') or ''}"
    return variables, connections
