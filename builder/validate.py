"""Import every DAG file against the image's own Python environment, in a sandbox, only what changed.

The environment is the image's layers below the project's files (base, system packages,
Python requirements, Dockerfile layers), unpacked once per machine; the project's dags/,
plugins/ and include/ are mounted read-only where the image has them. A file's result is
cached by (its content, the environment, the harness, the limits); a run imports only the
files without one, and the duplicate-dag_id check always runs over all results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from builder.errors import BuildError, InputError
from builder.resources import template_text
from builder.rootfs_cache import chain_id, unpacked
from builder.sandbox import Mount, SandboxRun, Session, run
from builder.store import LayerRecord, Store

HARNESS_VERSION = "1"
PROJECT_DIRS = ("dags", "plugins", "include")


@dataclass(frozen=True)
class Limits:
    timeout_s: int = 30
    memory_mb: int = 2048
    processes: int = 64
    cpu_s: int = 60


@dataclass
class FileResult:
    file: str                               # relative to the project
    dags: list[dict[str, Any]]
    errors: list[dict[str, str]]
    duration_s: float
    cached: bool = False
    allowed_to_fail: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.errors) and not self.allowed_to_fail


@dataclass
class Report:
    status: str                             # "ok", "failed", "skipped"
    reason: str = ""
    airflow_version: str | None = None
    files: list[FileResult] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    imported: int = 0
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every nested value, which a watch build pays for each save.
        return {"status": self.status, "reason": self.reason, "airflow_version": self.airflow_version,
                "files": [dict(vars(f)) for f in self.files], "duplicates": self.duplicates,
                "imported": self.imported, "duration_s": self.duration_s}


@dataclass
class ValidationInputs:
    project: Path
    store: Store
    env_layers: list[LayerRecord]          # the image below the project's files
    workdir: str
    dag_hashes: dict[str, str]             # relpath of each file under dags/ -> content sha256
    support_hash: str                      # plugins/, include/, .airflowignore: a change re-imports every DAG
    limits: Limits = field(default_factory=Limits)
    allowed_failures: tuple[str, ...] = ()
    safe_mode: bool = True
    variables: dict[str, str] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)


def validate(inputs: ValidationInputs) -> Report:
    started = time.monotonic()
    dags_dir = inputs.project / "dags"
    if not dags_dir.is_dir():
        return Report("skipped", "the project has no dags/ directory")
    env_id = chain_id(inputs.env_layers)
    settings = _hash({"harness": HARNESS_VERSION, "limits": asdict(inputs.limits), "safe_mode": inputs.safe_mode,
                      "variables": inputs.variables, "connections": inputs.connections, "env": env_id,
                      "workdir": inputs.workdir, "support": inputs.support_hash,
                      "environment": sorted(_airflow_environment().items())})
    whole = _hash({"settings": settings, "dags": sorted(inputs.dag_hashes.items())})
    cached_run = inputs.store.get_record("dag-runs", whole)
    if cached_run is not None and _warm is not None:
        _warm_session(inputs)  # watch mode: Airflow imports in the background, ready for the next edit
    if cached_run is not None:
        report = _report_from(cached_run, inputs, cached=True)
        report.duration_s = round(time.monotonic() - started, 3)
        return report

    known = {rel: _stored_result(inputs.store, _file_key(settings, rel, digest))
             for rel, digest in inputs.dag_hashes.items()}
    known = {rel: result for rel, result in known.items() if result is not None}
    outcome = _run_harness(inputs, known)
    if outcome.get("airflow_version") is None:  # installed, but it does not import: nothing can be validated
        return Report("failed", outcome.get("error", "Airflow cannot be imported in the image"),
                      duration_s=round(time.monotonic() - started, 3))
    folder = posixpath.join(inputs.workdir, "dags")
    results: dict[str, dict] = {}
    for path in outcome["files"]:
        rel = posixpath.relpath(path, folder)
        if rel in known:
            results[rel] = dict(known[rel], cached=True)
            continue
        result = outcome["results"][path]
        results[rel] = result
        digest = inputs.dag_hashes.get(rel)
        if digest is not None:
            key = _file_key(settings, rel, digest)
            inputs.store.put_record("dag-results", key, result)
            _results_seen[key] = result
    run_record = {"airflow_version": outcome["airflow_version"], "results": results,
                  "imported": len(outcome["results"])}
    inputs.store.put_record("dag-runs", whole, run_record)
    report = _report_from(run_record, inputs, cached=False)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _report_from(record: dict, inputs: ValidationInputs, cached: bool) -> Report:
    import fnmatch

    files = []
    for rel, result in sorted(record["results"].items()):
        files.append(FileResult(
            file=f"dags/{rel}", dags=result["dags"], errors=result["errors"], duration_s=result["duration_s"],
            cached=cached or result.get("cached", False),
            allowed_to_fail=any(fnmatch.fnmatch(f"dags/{rel}", pattern) for pattern in inputs.allowed_failures)))
    owners: dict[str, list[str]] = {}
    for result in files:
        for dag in result.dags:
            owners.setdefault(dag["dag_id"], []).append(result.file)
    duplicates = [{"dag_id": dag_id, "files": paths} for dag_id, paths in sorted(owners.items()) if len(paths) > 1]
    failed = any(f.failed for f in files) or bool(duplicates)
    return Report("failed" if failed else "ok", airflow_version=record["airflow_version"], files=files,
                  duplicates=duplicates, imported=0 if cached else record["imported"])


def project_job(inputs: ValidationInputs, argv: list[str], directories: tuple[str, ...], work: Path | None,
                timeout_s: float) -> SandboxRun:
    """A sandbox run over the image's environment, with the project's `directories` mounted read-only."""
    rootfs = unpacked(inputs.store, inputs.env_layers)
    for directory in directories:
        (rootfs / inputs.workdir.strip("/") / directory).mkdir(parents=True, exist_ok=True)  # mount points
    (rootfs / "airbuild").mkdir(exist_ok=True)
    mounts = [Mount(inputs.project / d, posixpath.join(inputs.workdir, d))
              for d in directories if (inputs.project / d).is_dir()]
    if work is not None:
        mounts.append(Mount(work, "/airbuild"))
    folder = posixpath.join(inputs.workdir, "dags")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "AIRFLOW_HOME": "/tmp/airflow",
           "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": ":".join(posixpath.join(inputs.workdir, d) for d in ("dags", "plugins", "include")),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": folder,
           "AIRFLOW__CORE__PLUGINS_FOLDER": posixpath.join(inputs.workdir, "plugins"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow/airflow.db",
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(inputs.limits.timeout_s + 5), **_airflow_environment()}
    return SandboxRun(rootfs, argv, mounts, env, workdir=inputs.workdir, timeout_s=timeout_s)


def run_project_tests(inputs: ValidationInputs, pytest_args: list[str], to_stderr: bool = False) -> int:
    """`airbuild test`: the project's tests/ with the image's pytest, in the same sandbox; output streamed."""
    if not (inputs.project / "tests").is_dir():
        raise InputError("the project has no tests/ directory")
    job = project_job(inputs, ["python3", "-m", "pytest", "-p", "no:cacheprovider", "tests", *pytest_args],
                      (*PROJECT_DIRS, "tests"), None, timeout_s=3600)
    return run(job, capture=False, stdout_to_stderr=to_stderr).returncode


def _harness_work_dir(inputs: ValidationInputs, name: str) -> Path:
    """A directory holding the rendered harness, mounted at /airbuild in the sandbox."""
    import jinja2

    work = inputs.store.root / "tmp" / f"{os.getpid()}.{name}"
    work.mkdir(parents=True, exist_ok=True)
    template = jinja2.Template(template_text("dag_harness.py.j2"))
    (work / "harness.py").write_text(template.render(harness_version=HARNESS_VERSION))
    return work


def _run_harness(inputs: ValidationInputs, known: dict[str, dict]) -> dict:
    folder = posixpath.join(inputs.workdir, "dags")
    request = {"dags_folder": folder, "known": sorted(known), "timeout_s": inputs.limits.timeout_s,
               "limits": asdict(inputs.limits), "writable": ["/tmp/", "/dev/"], "safe_mode": inputs.safe_mode,
               "variables": inputs.variables, "connections": inputs.connections}
    if _warm is not None:
        return json.loads(_warm_session(inputs).request(json.dumps(request)))
    work = _harness_work_dir(inputs, "validate")
    try:
        (work / "request.json").write_text(json.dumps(request))
        timeout = 120 + inputs.limits.timeout_s * (len(inputs.dag_hashes) + 1)
        proc = run(project_job(inputs, ["python3", "/airbuild/harness.py", "/airbuild/request.json"], PROJECT_DIRS,
                               work, timeout))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise BuildError(f"the DAG harness failed in the sandbox (exit {proc.returncode}):\n"
                         f"{(proc.stderr.strip() or proc.stdout.strip())[-3000:]}") from None


# -- watch mode: one harness per environment, kept running between builds -------------------------

_warm: dict[str, tuple[Session, Path]] | None = None


@contextlib.contextmanager
def warm_harness() -> Iterator[None]:
    """While active, validations reuse a running harness (Airflow imported once) per environment."""
    global _warm
    _warm = {}
    try:
        yield
    finally:
        sessions, _warm = _warm, None
        for session, work in sessions.values():
            session.close()
            shutil.rmtree(work, ignore_errors=True)


def _warm_session(inputs: ValidationInputs) -> Session:
    key = _hash({"env": chain_id(inputs.env_layers), "project": str(inputs.project), "workdir": inputs.workdir,
                 "dirs": [d for d in PROJECT_DIRS if (inputs.project / d).is_dir()]})
    entry = _warm.get(key)
    if entry is not None and entry[0].alive():
        return entry[0]
    for session, work in _warm.values():  # another environment (requirements changed): its harness goes
        session.close()
        shutil.rmtree(work, ignore_errors=True)
    _warm.clear()
    work = _harness_work_dir(inputs, f"harness-{key[:12]}")
    session = Session(project_job(inputs, ["python3", "/airbuild/harness.py", "--serve"], PROJECT_DIRS, work,
                                  timeout_s=0))
    _warm[key] = (session, work)
    return session


def _airflow_environment() -> dict[str, str]:
    """Connections and variables set in the environment, as Airflow reads them."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}


_results_seen: dict[str, dict] = {}  # file key -> result, for this process (watch asks again on every save)


def _stored_result(store: Store, key: str) -> dict | None:
    result = _results_seen.get(key)
    if result is None:
        result = store.get_record("dag-results", key)
        if result is not None:
            _results_seen[key] = result
    return result


def _file_key(settings: str, rel: str, digest: str) -> str:
    return _hash({"settings": settings, "file": rel, "content": digest})


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
