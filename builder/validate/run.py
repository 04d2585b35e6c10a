"""Import every DAG file against the image's own Python environment, in a sandbox, only what changed.

The environment is the image's layers below the project's files (base, system packages,
Python requirements, Dockerfile layers), unpacked once per machine; the project's dags/,
plugins/ and include/ are mounted read-only where the image has them. A file's result is
cached by (its content, the environment, the harness, the limits); a run imports only the
files without one, and the duplicate-dag_id check always runs over all results.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import posixpath
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from builder.validate import astro_tests
from builder.common import masking
from builder.validate.astro_tests import AstroTestCase
from builder.common.errors import BuildError, InputError
from builder.validate import harness
from builder.validate.memory import ServedHarness, ValidationMemory
from builder.layers.unpack import chain_id, in_root, unpacked
from builder.validate.sandbox import CONFINED, Mount, SandboxRun, Session, choose, run, run_all
from builder.store.limits import Limits
from builder.store.store import LayerRecord, Store, WorkDir
from builder.common.hashing import json_sha256

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
    # What the import printed: the first 64 KiB of each stream, and how much there was in all.
    stdout: str = ""
    stdout_bytes: int = 0
    stderr: str = ""
    stderr_bytes: int = 0

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
    environment: str | None = None          # chain id of the layers imported against: the store's rootfs/<id>
    sandbox: str | None = None              # where files were imported this time (bwrap, docker, none); None: cache
    workers: int = 0                        # sandboxes that imported files this time, at once (0: none ran)
    warnings: list[str] = field(default_factory=list)
    astro_tests: list[AstroTestCase] = field(default_factory=list)  # Astro's parse test, when the project has it

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every nested value, which a watch build pays for each save.
        return {"status": self.status, "reason": self.reason, "airflow_version": self.airflow_version,
                "files": [dict(vars(f)) for f in self.files], "duplicates": self.duplicates,
                "imported": self.imported, "duration_s": self.duration_s, "environment": self.environment,
                "sandbox": self.sandbox, "workers": self.workers, "warnings": self.warnings,
                "astro_tests": [case.to_json() for case in self.astro_tests]}


class SharedRecords(Protocol):
    """Results by content key shared beyond this machine (builder.cache.remote.RemoteCache)."""

    def get_record(self, kind: str, name: str) -> dict | None: ...

    def put_record(self, kind: str, name: str, value: dict) -> None: ...

    def offer(self, kind: str, name: str, value: dict) -> None: ...  # put_record, unless it has the record


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
    sandbox: str = "auto"                  # auto | bwrap | docker | none (see builder/validate/sandbox.py)
    image_env: dict[str, str] = field(default_factory=dict)  # the image config's Env: what a container starts with
    dotenv: dict[str, str] = field(default_factory=dict)     # the project's .env (or --env FILE)
    warnings: tuple[str, ...] = ()         # about those inputs (a malformed .env line), for the report
    astro_tests: bool = False              # also run the project's .astro/test_dag_integrity_default.py
    shared: SharedRecords | None = None    # the team's shared cache: results another machine found
    workers: int = 0                       # sandboxes importing files at once; 0: one per core


@dataclass(frozen=True)
class Placement:
    """Where the job sees the project, its scratch space and the harness: the image's paths inside a
    sandbox, the host's without one."""

    sandbox: str                           # resolved: bwrap | docker | none
    workdir: str
    tmp: str
    harness_dir: str


def placement(inputs: ValidationInputs, work: Path) -> Placement:
    sandbox = choose(inputs.sandbox)
    if sandbox in CONFINED:
        return Placement(sandbox, inputs.workdir, "/tmp", "/airbuild")
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    return Placement(sandbox, str(inputs.project), str(work / "tmp"), str(work))


def validate(inputs: ValidationInputs, memory: ValidationMemory | None = None) -> Report:
    """`memory`: what the caller's earlier validations left (watch); None: a one-shot run."""
    memory = memory or ValidationMemory()
    started = time.monotonic()
    dags_dir = inputs.project / "dags"
    if not dags_dir.is_dir():
        return Report("skipped", "the project has no dags/ directory")
    env_id = chain_id(inputs.env_layers)
    # Any confined sandbox gives the same results; an unconfined run may not (a write that succeeds).
    # (auto never means none, so no probing here: a cached answer starts no process.)
    confinement = "none" if inputs.sandbox == "none" else "confined"
    settings = _hash({"sandbox": confinement, "harness": harness.VERSION, "limits": asdict(inputs.limits),
                      "safe_mode": inputs.safe_mode,
                      "variables": inputs.variables, "connections": inputs.connections, "env": env_id,
                      "workdir": inputs.workdir, "support": inputs.support_hash,
                      "environment": _hash(sorted(dag_environment(inputs).items()))})
    whole = _hash({"settings": settings, "dags": sorted(inputs.dag_hashes.items())})
    cached_run = _record(inputs, "dag-runs", whole)
    if cached_run is not None and memory.serve:
        _warm_session(inputs, memory)  # watch mode: Airflow imports in the background, ready for the next edit
    if cached_run is not None:
        if inputs.shared is not None:
            inputs.shared.offer("dag-latest", settings, _latest(inputs, cached_run["results"]))
        report = _report_from(cached_run, inputs, cached=True)
        _with_astro_tests(report, inputs, whole)
        report.duration_s = round(time.monotonic() - started, 3)
        return report

    known = {rel: _stored_result(inputs.store, _remembered_key(memory, settings, rel, digest), memory)
             for rel, digest in inputs.dag_hashes.items()}
    known = {rel: result for rel, result in known.items() if result is not None}
    if inputs.shared is not None and len(known) < len(inputs.dag_hashes):
        known.update(_shared_results(inputs, settings, known))
    outcome, place = _run_harness(inputs, known, memory)
    folder = posixpath.join(place.workdir, "dags")
    _compile_bytecode(inputs, outcome.get("uncompiled") or [], memory)
    if outcome.get("airflow_version") is None:  # installed, but it does not import: nothing can be validated
        return Report("failed", outcome.get("error", "Airflow cannot be imported in the image"),
                      duration_s=round(time.monotonic() - started, 3))
    results: dict[str, dict] = {}
    for path in outcome["files"]:
        rel = _relative(path, folder)
        if rel in known:
            results[rel] = dict(known[rel], cached=True)
            continue
        result = masking.value(outcome["results"][path])  # DAG code may print what it was given
        results[rel] = result
        digest = inputs.dag_hashes.get(rel)
        if digest is not None:
            key = _file_key(settings, rel, digest)
            inputs.store.put_record("dag-results", key, result)
            memory.results[key] = result
    run_record = {"airflow_version": outcome["airflow_version"], "results": results,
                  "imported": len(outcome["results"])}
    inputs.store.put_record("dag-runs", whole, run_record)
    if inputs.shared is not None:
        inputs.shared.put_record("dag-runs", whole, run_record)
        # For the next commit's run elsewhere: the files it did not change need not be imported again.
        inputs.shared.put_record("dag-latest", settings, _latest(inputs, results))
    report = _report_from(run_record, inputs, cached=False)
    report.sandbox = place.sandbox
    report.workers = outcome["workers"]
    _with_astro_tests(report, inputs, whole)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _relative(path: str, folder: str) -> str:
    """posixpath.relpath(path, folder), without its two abspath calls for the usual case (a clean path below
    `folder`): the harness lists every DAG file on every save, 1,000 relpath calls cost ~15 ms."""
    prefix = folder.rstrip("/") + "/"
    if path.startswith(prefix):
        rel = path[len(prefix):]
        if rel and posixpath.normpath(rel) == rel:
            return rel
    return posixpath.relpath(path, folder)


def _with_astro_tests(report: Report, inputs: ValidationInputs, whole: str) -> None:
    """Astro's parse test, when asked for and the project has it: its cases join the report."""
    if not inputs.astro_tests or not astro_tests.present(inputs.project) or report.airflow_version is None:
        return
    key = _hash({"run": whole, "tests": astro_tests.inputs_hash(inputs.project), "version": astro_tests.VERSION})
    stored = _record(inputs, "astro-tests", key)
    if stored is None:
        with scratch(inputs, "astro-tests") as (work, place):
            proc = run(project_job(inputs, place, astro_tests.argv(), (*PROJECT_DIRS, ".astro"), work,
                                   timeout_s=_every_file_s(inputs)))
        cases = astro_tests.read_results(proc.stdout, proc.returncode, proc.stderr)
        stored = {"cases": [case.to_json() for case in cases]}
        inputs.store.put_record("astro-tests", key, stored)
        if inputs.shared is not None:
            inputs.shared.put_record("astro-tests", key, stored)
        report.sandbox = report.sandbox or place.sandbox
    report.astro_tests = [astro_tests.AstroTestCase(**case) for case in stored["cases"]]
    if any(case.failed for case in report.astro_tests):
        report.status = "failed"


_OUTPUT_FIELDS = {"stdout": "", "stdout_bytes": 0, "stderr": "", "stderr_bytes": 0}


def _report_from(record: dict, inputs: ValidationInputs, cached: bool) -> Report:
    files = []
    for rel, result in sorted(record["results"].items()):
        files.append(FileResult(
            file=f"dags/{rel}", dags=result["dags"], errors=result["errors"], duration_s=result["duration_s"],
            cached=cached or result.get("cached", False),
            allowed_to_fail=any(fnmatch.fnmatch(f"dags/{rel}", pattern) for pattern in inputs.allowed_failures),
            **{k: result.get(k, default) for k, default in _OUTPUT_FIELDS.items()}))
    owners: dict[str, list[str]] = {}
    for result in files:
        for dag in result.dags:
            owners.setdefault(dag["dag_id"], []).append(result.file)
    duplicates = [{"dag_id": dag_id, "files": paths} for dag_id, paths in sorted(owners.items()) if len(paths) > 1]
    failed = any(f.failed for f in files) or bool(duplicates)
    return Report("failed" if failed else "ok", airflow_version=record["airflow_version"], files=files,
                  duplicates=duplicates, imported=0 if cached else record["imported"],
                  environment=chain_id(inputs.env_layers), warnings=list(inputs.warnings))


def project_job(inputs: ValidationInputs, place: Placement, argv: list[str], directories: tuple[str, ...],
                work: Path, timeout_s: float) -> SandboxRun:
    """A run over the image's environment, the project's `directories` read-only, `work` as the harness dir."""
    rootfs = unpacked(inputs.store, inputs.env_layers)
    mounts = []
    if place.sandbox in CONFINED:
        for directory in directories:
            # mount points, made where the image's own symlinks lead (never out of its copy)
            in_root(rootfs, posixpath.join(inputs.workdir, directory)).mkdir(parents=True, exist_ok=True)
        in_root(rootfs, place.harness_dir).mkdir(exist_ok=True)
        mounts = [Mount(inputs.project / d, posixpath.join(place.workdir, d))
                  for d in directories if (inputs.project / d).is_dir()]
        mounts.append(Mount(work, place.harness_dir))
    env = dag_environment(inputs, place)
    return SandboxRun(rootfs, argv, mounts, env, workdir=place.workdir, timeout_s=timeout_s, sandbox=place.sandbox,
                      memory_mb=inputs.limits.memory_mb + 1024, processes=inputs.limits.processes + 32)


def dag_environment(inputs: ValidationInputs, place: Placement | None = None) -> dict[str, str]:
    """The environment DAG code runs in, as Airflow in the image would see it: the image config's Env,
    then the project's .env, then the caller's AIRFLOW_CONN_* / AIRFLOW_VAR_*, then what the sandbox
    needs (a private, writable home for Airflow's config, logs and SQLite database; the project's
    folders; no examples). Without `place`: the sandbox's paths, for the cache key."""
    workdir, tmp = (place.workdir, place.tmp) if place else (inputs.workdir, "/tmp")

    def here(path: str) -> str:  # an image path under the workdir, where this run sees it (unconfined: the host)
        if path == inputs.workdir or path.startswith(inputs.workdir.rstrip("/") + "/"):
            return workdir + path[len(inputs.workdir.rstrip("/")):]
        return path

    env = {**inputs.image_env, **inputs.dotenv, **_airflow_environment()}
    scratch = posixpath.join(tmp, "airflow")
    pythonpath = ":".join(here(p) for p in env.get("PYTHONPATH", "").split(":") if p)
    env.update({
        "PATH": env.get("PATH") or "/usr/local/bin:/usr/bin:/bin", "HOME": tmp,
        "AIRFLOW_HOME": here(env.get("AIRFLOW_HOME") or inputs.workdir),
        "AIRFLOW_CONFIG": posixpath.join(scratch, "airflow.cfg"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": posixpath.join(scratch, "logs"),
        "AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY": posixpath.join(scratch, "logs", "scheduler"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": posixpath.join(workdir, "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": posixpath.join(workdir, "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{scratch}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(inputs.limits.timeout_s + 5)})
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    return env


def run_project_tests(inputs: ValidationInputs, pytest_args: list[str], to_stderr: bool = False) -> int:
    """`airbuild test`: the project's tests/ with the image's pytest, in the same sandbox; output streamed."""
    if not (inputs.project / "tests").is_dir():
        raise InputError("the project has no tests/ directory")
    with scratch(inputs, "test") as (work, place):
        job = project_job(inputs, place, ["python3", "-m", "pytest", "-p", "no:cacheprovider", "tests", *pytest_args],
                          (*PROJECT_DIRS, "tests"), work, timeout_s=3600)
        return run(job, capture=False, stdout_to_stderr=to_stderr).returncode


@contextlib.contextmanager
def scratch(inputs: ValidationInputs, name: str) -> Iterator[tuple[Path, Placement]]:
    """A job's own directory in the store's tmp/ (its harness_dir in the sandbox) and where the job sees
    things; the directory is removed however the job ends."""
    work = inputs.store.work_dir(name)
    try:
        yield work.path, placement(inputs, work.path)
    finally:
        work.release()


def _every_file_s(inputs: ValidationInputs) -> float:
    """A run that imports every DAG file: each may take its whole timeout."""
    return 120 + inputs.limits.timeout_s * (len(inputs.dag_hashes) + 1)


def _harness_work_dir(inputs: ValidationInputs, name: str) -> WorkDir:
    """A directory holding a copy of the harness: the job's harness_dir."""
    work = inputs.store.work_dir(name)
    shutil.copyfile(harness.__file__, work.path / "harness.py")
    return work


def _request(inputs: ValidationInputs, place: Placement, known: dict[str, dict]) -> dict:
    return {"dags_folder": posixpath.join(place.workdir, "dags"), "known": sorted(known),
            "timeout_s": inputs.limits.timeout_s, "limits": asdict(inputs.limits),
            "writable": [place.tmp.rstrip("/") + "/", "/dev/"], "safe_mode": inputs.safe_mode,
            "own_pid_namespace": place.sandbox in CONFINED, "rlimit_nproc": place.sandbox == "bwrap",
            "variables": inputs.variables, "connections": inputs.connections,
            "project_root": place.workdir}


def _run_harness(inputs: ValidationInputs, known: dict[str, dict], memory: ValidationMemory) -> tuple[dict, Placement]:
    """The harness's answer, and where it ran (its DAG folder names the files)."""
    workers = _workers(inputs, known, memory.serve)
    if memory.serve and workers == 1:
        session, place = _warm_session(inputs, memory)
        return dict(json.loads(session.request(json.dumps(_request(inputs, place, known)))), workers=1), place
    # Each worker its own sandbox (its own PID namespace and process count), importing every n-th file.
    with contextlib.ExitStack() as stack:
        jobs, place = [], None
        for index in range(workers):
            work, place = stack.enter_context(scratch(inputs, f"validate-{index}"))
            shutil.copyfile(harness.__file__, work / "harness.py")
            request = dict(_request(inputs, place, known), shard=[index, workers])
            (work / "request.json").write_text(json.dumps(request))
            job = project_job(inputs, place, ["python3", posixpath.join(place.harness_dir, "harness.py"),
                                              posixpath.join(place.harness_dir, "request.json")],
                              PROJECT_DIRS, work, _every_file_s(inputs))
            job.as_init = True
            job.stdout_limit = (8 << 20) + len(inputs.dag_hashes) * (1 << 20)  # a file's result is at most ~1 MiB
            jobs.append(job)
        answers = [_answer(proc) for proc in run_all(jobs)]
    if memory.serve:  # watch's first build: the served harness starts once the workers are done
        _warm_session(inputs, memory)
    return _merged(answers), place


FILES_PER_WORKER = 4   # fewer files than this do not pay for another sandbox importing Airflow
SERVED_UP_TO = 100     # watch: its warm harness imports up to this many files faster than fresh sandboxes


def _workers(inputs: ValidationInputs, known: dict[str, dict], serve: bool) -> int:
    """How many sandboxes to import in: one per FILES_PER_WORKER files left to import, at most the
    configured number (default: one per core); 1 tells watch to use its warm harness."""
    wanted = inputs.workers or os.cpu_count() or 1
    left = sum(1 for rel in inputs.dag_hashes if rel not in known and rel.endswith((".py", ".zip")))
    if serve and left < SERVED_UP_TO:
        return 1
    return max(1, min(wanted, -(-left // FILES_PER_WORKER)))


def _answer(proc) -> dict:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise BuildError(f"the DAG harness failed in the sandbox (exit {proc.returncode}):\n"
                         f"{(proc.stderr.strip() or proc.stdout.strip())[-3000:]}") from None


def _merged(answers: list[dict]) -> dict:
    """The workers' answers as one harness's: every worker lists the same files; each imported its share."""
    first = answers[0]
    if any(answer.get("airflow_version") is None for answer in answers):
        return next(answer for answer in answers if answer.get("airflow_version") is None)
    results = {}
    for answer in answers:
        results.update(answer["results"])
    return {**first, "workers": len(answers),
            "results": {path: results[path] for path in first["files"] if path in results},
            "uncompiled": sorted({path for answer in answers for path in answer.get("uncompiled") or []})}


def _compile_bytecode(inputs: ValidationInputs, sources: list[str], memory: ValidationMemory) -> None:
    """Compile what the harness imported from source into the unpacked environment (rootfs/ is airbuild's
    copy, not the image): Airflow's import then takes about half as long in every later run. compileall
    with -I -S reads the files and writes .pyc beside them; it runs none of their code."""
    sandbox = choose(inputs.sandbox)
    if not sources or sandbox == "docker":  # docker runs an image imported from rootfs/ before: no gain
        return
    rootfs = unpacked(inputs.store, inputs.env_layers)
    # Once per process and file: one that does not compile must not cost a sandbox run on every save.
    sources = [s for s in sources if (str(rootfs), s) not in memory.compiled]
    if not sources:
        return
    memory.compiled.update((str(rootfs), s) for s in sources)
    if sandbox == "none":  # the harness named host paths
        sources = [s for s in sources if s.startswith(os.path.join(str(rootfs), ""))]
    with scratch(inputs, "compile") as (work, place):
        (work / "sources.txt").write_text("".join(f"{source}\n" for source in sources if "\n" not in source))
        listing = posixpath.join(place.harness_dir, "sources.txt")
        job = SandboxRun(rootfs, ["python3", "-I", "-S", "-m", "compileall", "-q", "-i", listing],
                         [Mount(work, place.harness_dir)] if sandbox in CONFINED else [], {"PATH": "/usr/bin:/bin"},
                         timeout_s=600, sandbox=sandbox, writable_root=True)
        run(job)  # best effort: a source it cannot compile stays uncompiled


# -- watch mode: one harness per environment, kept running between builds -------------------------

def _warm_session(inputs: ValidationInputs, memory: ValidationMemory) -> tuple[Session, Placement]:
    key = _hash({"env": chain_id(inputs.env_layers), "project": str(inputs.project), "workdir": inputs.workdir,
                 "sandbox": inputs.sandbox, "dirs": [d for d in PROJECT_DIRS if (inputs.project / d).is_dir()],
                 "environment": dag_environment(inputs)})  # a new .env means a new harness
    served = memory.harnesses.get(key)
    if served is not None and served.session.alive():
        return served.session, served.place
    memory.close()  # another environment (requirements changed): its harness goes
    work = _harness_work_dir(inputs, f"harness-{key[:12]}")
    place = placement(inputs, work.path)
    job = project_job(inputs, place, ["python3", posixpath.join(place.harness_dir, "harness.py"), "--serve"],
                      PROJECT_DIRS, work.path, timeout_s=0)
    job.as_init = True
    held = Store(inputs.store.root)
    try:
        session = Session(job)
    except BaseException:
        held.close(Limits())
        work.release()
        raise
    memory.harnesses[key] = ServedHarness(session, work, place, held)
    return session, place


def _airflow_environment() -> dict[str, str]:
    """Connections and variables set in the environment, as Airflow reads them."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}


def _record(inputs: ValidationInputs, kind: str, key: str) -> dict | None:
    """A result by its key: the local store's (offered to the shared cache), else the shared cache's (then kept
    locally)."""
    found = inputs.store.get_record(kind, key)
    if inputs.shared is None:
        return found
    if found is None:
        found = inputs.shared.get_record(kind, key)
        if found is not None:
            inputs.store.put_record(kind, key, found)
    else:  # a warm runner fills a new cache with what it already knows
        inputs.shared.offer(kind, key, found)
    return found


def _latest(inputs: ValidationInputs, results: dict[str, dict]) -> dict:
    """A run's per-file results with the files' hashes: what `_shared_results` reuses elsewhere."""
    return {"dags": inputs.dag_hashes,
            "results": {rel: {k: v for k, v in result.items() if k != "cached"} for rel, result in results.items()}}


def _shared_results(inputs: ValidationInputs, settings: str, known: dict[str, dict]) -> dict[str, dict]:
    """Per-file results of the last run another machine shared with the same settings, for unchanged files."""
    latest = inputs.shared.get_record("dag-latest", settings) or {}
    dags, results = latest.get("dags") or {}, latest.get("results") or {}
    found = {}
    for rel, digest in inputs.dag_hashes.items():
        if rel not in known and dags.get(rel) == digest and isinstance(results.get(rel), dict):
            found[rel] = results[rel]
            inputs.store.put_record("dag-results", _file_key(settings, rel, digest), results[rel])
    return found


def _stored_result(store: Store, key: str, memory: ValidationMemory) -> dict | None:
    result = memory.results.get(key)
    if result is None:
        result = store.get_record("dag-results", key)
        if result is not None:
            memory.results[key] = result
    return result


def _remembered_key(memory: ValidationMemory, settings: str, rel: str, digest: str) -> str:
    """_file_key, computed once per process (watch asks for every file on every save)."""
    key = memory.file_keys.get((settings, rel, digest))
    if key is None:
        key = memory.file_keys[(settings, rel, digest)] = _file_key(settings, rel, digest)
    return key


def _file_key(settings: str, rel: str, digest: str) -> str:
    return _hash({"settings": settings, "file": rel, "content": digest})


def _hash(value: Any) -> str:
    return json_sha256(value)
