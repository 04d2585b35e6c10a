"""Benchmark `airbuild parse` against a plain one-process DagBag load, on Airflow's own example DAGs.

    python3 benchmarks/parse_bench.py [--repeat 3] [--out FILE]

Both run in the same unpacked Airflow 3.3.2 environment (the store of the test suite,
~/.cache/airbuild/test-store or $AIRBUILD_TEST_STORE). Prints one JSON object on stdout
(progress goes to stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit, machine

REPO = Path(__file__).resolve().parent.parent
STORE = Path(os.environ.get("AIRBUILD_TEST_STORE", Path.home() / ".cache" / "airbuild" / "test-store"))
WORKDIR = "/usr/local/airflow"
FOLDER = f"{WORKDIR}/dags"
AIRFLOW = "3.3.2"
SITE = "usr/local/lib/python3.11/dist-packages"
EDITED_DAG = "dags/tutorial.py"
MARKER = "@@parse-bench@@ "  # prefixes the result line on stdout (DAGs may print too)
SANDBOX_UID = "50000"  # the base's `astro` user, as airbuild's sandbox uses

TOP_LEVEL = {
    "Dockerfile": "FROM airbuild-bench-base:latest\nENV AIRFLOW__CORE__LOAD_EXAMPLES=False\nUSER astro\n",
    "requirements.txt": f"apache-airflow=={AIRFLOW}\n",
    "packages.txt": "# none\n",
}
PLACEHOLDER_DAG = "from airflow.sdk import dag\n"  # only so the setup has a dags/ folder

# The same environment variables airbuild's sandbox sets (builder/validate/run.py), minus the limits.
PEER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "AIRFLOW_HOME": "/tmp/airflow",
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": FOLDER, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": FOLDER, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow/airflow.db",
}

# The peer: what `airflow dags list-import-errors` / a DAG processor does, in one process, no isolation.
PEER_SCRIPT = f"""
import json, os, resource, time
started = time.perf_counter()
import airflow
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder={FOLDER!r})
filled = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)  # bwrap does not wait for its init: measured here
document = {{"airflow_version": airflow.__version__, "import_s": imported - started, "fill_s": filled - imported,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "files": len(bag.dagbag_stats), "dag_ids": sorted(bag.dags),
            "errors": {{os.path.relpath(k, {FOLDER!r}): str(v).strip().splitlines()[-1]
                       for k, v in bag.import_errors.items()}}}}
print({MARKER!r} + json.dumps(document), flush=True)
"""

# Bare interpreter start in the sandbox, and the Airflow import alone.
PROBE_PASS = "pass"
PROBE_IMPORT = f"""
import time
started = time.perf_counter()
import airflow
from airflow.dag_processing.dagbag import DagBag
print({MARKER!r} + repr(time.perf_counter() - started), flush=True)
"""

# Which unpacked environment airbuild's sandbox uses for this project (the same calls `airbuild parse` makes).
ROOTFS_OF = """
import sys
from pathlib import Path
from builder.engine.build import BuildOptions, _environment
from builder.engine.gate import validation_inputs
from builder.project.manifest import BaseSource
from builder.layers.unpack import unpacked
with _environment(BuildOptions(project=Path(sys.argv[1]), base=BaseSource.parse(sys.argv[2]))) as prepared:
    inputs = validation_inputs(prepared.ctx, prepared.plan)
    print(unpacked(inputs.store, inputs.env_layers))
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4)}


def debian_rootfs() -> Path:
    log("base: scripts/debian-rootfs (cached after the first run)")
    done = subprocess.run([str(REPO / "scripts" / "debian-rootfs")], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def store_env() -> dict[str, str]:
    return {**os.environ, "AIRBUILD_CACHE_DIR": str(STORE)}


def checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} ... failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


# -- the project ----------------------------------------------------------------


def setup_project(project: Path, base: Path) -> Path:
    """Write the project, pin it (`airbuild lock`, as a committed project would be) and return its environment."""
    project.mkdir(parents=True)
    for name, text in TOP_LEVEL.items():
        (project / name).write_text(text)
    (project / "dags").mkdir()
    (project / "dags" / "placeholder.py").write_text(PLACEHOLDER_DAG)
    log(f"setup: airbuild lock (not timed; store {STORE})")
    checked([sys.executable, "-m", "builder", "lock", str(project), "--base", f"rootfs:{base}"], env=store_env())
    log("setup: locating the unpacked environment (builds it if the store lacks it: slow, once)")
    done = checked([sys.executable, "-c", ROOTFS_OF, str(project), f"rootfs:{base}"], env=store_env())
    rootfs = Path(done.stdout.strip().splitlines()[-1])
    if not (rootfs / SITE / f"apache_airflow-{AIRFLOW}.dist-info").is_dir():
        raise RuntimeError(f"{rootfs} does not hold apache-airflow {AIRFLOW}")
    return rootfs


def copy_examples(project: Path, rootfs: Path) -> int:
    """Airflow's example_dags/*.py and their helper directories (libs, plugins, sql...) into dags/."""
    examples = rootfs / SITE / "airflow" / "example_dags"
    (project / "dags" / "placeholder.py").unlink()
    for source in sorted(examples.glob("*.py")):
        shutil.copy(source, project / "dags" / source.name)
    for sub in sorted(p for p in examples.iterdir() if p.is_dir() and p.name != "__pycache__"):
        shutil.copytree(sub, project / "dags" / sub.name, ignore=shutil.ignore_patterns("__pycache__"))
    return sum(1 for p in (project / "dags").rglob("*.py"))


def edit_dag(project: Path, counter: int) -> None:
    with open(project / EDITED_DAG, "a") as handle:
        handle.write(f"# benchmark edit {counter}\n")


# -- airbuild -------------------------------------------------------------------


def clear_results() -> None:
    """No cached DAG results: only these two record directories of the shared store go."""
    for name in ("dag-results", "dag-runs"):
        shutil.rmtree(STORE / name, ignore_errors=True)


def children_cpu_s() -> float:
    """User and system CPU seconds of every process waited for so far (a run's: the difference around it;
    the machine's load distorts it far less than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def airbuild_parse(project: Path, base: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "builder", "parse", str(project), "--base", f"rootfs:{base}", "--json", *extra]
    started, cpu = time.perf_counter(), children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=store_env())
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"airbuild parse crashed (exit {done.returncode}):\n"
                           f"--- stdout ---\n{done.stdout[-5000:]}\n--- stderr ---\n{done.stderr[-5000:]}") from None
    imported = [f for f in report["files"] if not f["cached"]]
    children = sum(f["duration_s"] for f in imported)
    run = {
        "wall_s": round(wall, 4), "cpu_s": round(cpu, 3), "duration_s": report["duration_s"], "exit": done.returncode,
        "status": report["status"], "files": len(report["files"]), "workers": report.get("workers"),
        "dags": sum(len(f["dags"]) for f in report["files"]), "imported": report["imported"],
        "errors": sum(len(f["errors"]) for f in report["files"]) + len(report["duplicates"]),
        "children_s": round(children, 3),
        # sandbox start, Python start, Airflow import, file listing, result handling:
        "harness_rest_s": round(report["duration_s"] - children, 3) if imported else 0.0,
    }
    failing = {f["file"]: [e["message"] for e in f["errors"]] for f in report["files"] if f["errors"]}
    if failing or report["duplicates"] or done.returncode != 0:
        run["failing"] = failing
        run["duplicates"] = report["duplicates"]
        run["stderr_tail"] = done.stderr[-3000:]
    run["_report"] = report
    return run


def summary(runs: list[dict]) -> dict:
    last = runs[-1]
    out = {
        "wall_s": spread([r["wall_s"] for r in runs]),
        "duration_s": spread([r["duration_s"] for r in runs]),
        "children_s": spread([r["children_s"] for r in runs]),
        "harness_rest_s": spread([r["harness_rest_s"] for r in runs]),
        "files": last["files"], "dags": last["dags"], "errors": max(r["errors"] for r in runs),
        "imported": sorted({r["imported"] for r in runs}),
        "status": sorted({r["status"] for r in runs}),
    }
    for key in ("failing", "duplicates", "stderr_tail"):
        if any(key in r for r in runs):
            out[key] = next(r[key] for r in runs if key in r)
    return out


def per_file(report: dict) -> dict:
    """Where the children's time goes, in a run that imported every file."""
    times = sorted(((f["duration_s"], f["file"]) for f in report["files"] if not f["cached"]), reverse=True)
    values = [t for t, _ in times]
    return {"count": len(values), "sum_s": round(sum(values), 3), "median_s": round(statistics.median(values), 4),
            "max_s": round(values[0], 4), "slowest": [{"file": name, "s": t} for t, name in times[:5]]}


def bench_airbuild(project: Path, base: Path, repeat: int) -> tuple[dict, dict, set[str]]:
    cold, cached, edit = [], [], []
    for n in range(repeat):
        log(f"airbuild: cold parse {n + 1}/{repeat} (dag-results/ and dag-runs/ removed)")
        clear_results()
        cold.append(airbuild_parse(project, base))
    cold_report = cold[-1]["_report"]
    for n in range(repeat):
        log(f"airbuild: cached parse {n + 1}/{repeat}")
        cached.append(airbuild_parse(project, base))
    for n in range(repeat):
        log(f"airbuild: one-file edit {n + 1}/{repeat} ({EDITED_DAG})")
        edit_dag(project, n)
        edit.append(airbuild_parse(project, base))
    dag_ids = {d["dag_id"] for f in cold_report["files"] for d in f["dags"]}
    numbers = {"cold": summary(cold), "cached": summary(cached), "one_edit": summary(edit),
               "cold_per_file": per_file(cold_report)}
    return numbers, cold_report, dag_ids


# -- the peer: one DagBag in one process, same environment ------------------------


def bwrap(rootfs: Path, project: Path, code: str, extra: list[str] = (), env: dict | None = None) -> tuple[float, str]:
    """Run `python3 -c code` in the environment: wall seconds and its result (the line after MARKER on stdout)."""
    command = ["bwrap", "--ro-bind", str(rootfs), "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--ro-bind", str(project / "dags"), FOLDER, *extra, "--unshare-all", "--uid", SANDBOX_UID,
               "--gid", "0", "--die-with-parent", "--clearenv", "--chdir", WORKDIR]
    for key, value in {**PEER_ENV, **(env or {})}.items():
        command += ["--setenv", key, value]
    started = time.perf_counter()
    done = subprocess.run([*command, "python3", "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python3 in bwrap failed ({done.returncode}):\n{done.stderr[-4000:]}")
    results = [line[len(MARKER):] for line in done.stdout.splitlines() if line.startswith(MARKER)]
    return wall, results[-1] if results else ""


def peer_run(rootfs: Path, project: Path, extra: list[str] = (), env: dict | None = None) -> dict:
    wall, result = bwrap(rootfs, project, PEER_SCRIPT, extra, env)
    document = json.loads(result)
    document.update(wall_s=round(wall, 4), cpu_s=round(document["cpu_s"], 3), import_s=round(document["import_s"], 4),
                    fill_s=round(document["fill_s"], 4))
    return document


def bench_peer(rootfs: Path, project: Path, repeat: int) -> tuple[dict, set[str]]:
    runs = []
    for n in range(repeat):
        log(f"peer: DagBag in one bwrap process {n + 1}/{repeat}")
        runs.append(peer_run(rootfs, project))
    last = runs[-1]
    full = spread([r["wall_s"] for r in runs])
    return {
        "airflow_version": last["airflow_version"],
        "full_s": full,
        "fill_s": spread([r["fill_s"] for r in runs]),
        "airflow_import_s": spread([r["import_s"] for r in runs]),
        "one_edit_s": full,
        "one_edit_note": "no cache: after an edit the peer loads the whole folder again, so one_edit_s = full_s",
        "files": last["files"], "dags": len(last["dag_ids"]), "errors": len(last["errors"]),
        **({"failing": last["errors"]} if last["errors"] else {}),
    }, set(last["dag_ids"])


def diagnostics(rootfs: Path, project: Path, work: Path) -> dict:
    """Where the fixed costs are: the sandboxed interpreter, Airflow's import with and without bytecode."""
    log("diagnostics: python3 -c pass in bwrap, Airflow import, and both again with a warm bytecode cache")
    start_s = min(bwrap(rootfs, project, PROBE_PASS)[0] for _ in range(3))
    import_s = float(bwrap(rootfs, project, PROBE_IMPORT)[1])
    pyc = work / "pycache"
    pyc.mkdir()
    warm = (["--bind", str(pyc), "/tmp/pyc"], {"PYTHONPYCACHEPREFIX": "/tmp/pyc", "PYTHONDONTWRITEBYTECODE": ""})
    peer_run(rootfs, project, *warm)  # fills /pyc, not timed
    warm_import_s = float(bwrap(rootfs, project, PROBE_IMPORT, *warm)[1])
    warm_peer = peer_run(rootfs, project, *warm)
    started = time.perf_counter()
    checked([sys.executable, "-c", "import builder.engine.build, builder.engine.gate, builder.validate.run"])
    cli_import_s = time.perf_counter() - started
    pycs_in_env = sum(1 for _ in (rootfs / SITE / "airflow").rglob("*.pyc"))
    return {
        "sandbox_python_start_s": round(start_s, 4),
        "airflow_import_no_pyc_s": round(import_s, 4),
        "airflow_import_warm_pyc_s": round(warm_import_s, 4),
        "peer_with_warm_pyc": {"wall_s": warm_peer["wall_s"], "import_s": warm_peer["import_s"],
                               "fill_s": warm_peer["fill_s"]},
        "pyc_files_under_airflow_in_env": pycs_in_env,
        "airbuild_cli_import_s": round(cli_import_s, 4),
    }


# -- report ---------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="airbuild parse vs one-process DagBag on Airflow's example DAGs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("bwrap") is None:
        log("bwrap is not on PATH: both sides need it")
        return 2
    base = debian_rootfs()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="airbuild-parse-bench-") as tmp:
        work = Path(tmp)
        project = work / "project"
        rootfs = setup_project(project, base)
        py_files = copy_examples(project, rootfs)
        log(f"project: {py_files} .py files from {rootfs.name[:12]}.../airflow/example_dags")
        airbuild_numbers, cold_report, airbuild_ids = bench_airbuild(project, base, args.repeat)
        peer_numbers, peer_ids = bench_peer(rootfs, project, args.repeat)
        diag = diagnostics(rootfs, project, work)

    peer_full = peer_numbers["full_s"]["median"]
    report = {
        "project": {"airflow": AIRFLOW, "py_files": py_files, "edited": EDITED_DAG, "env_chain": rootfs.name,
                    "store": str(STORE)},
        "airbuild": airbuild_numbers,
        "peer": peer_numbers,
        "same_dag_ids": airbuild_ids == peer_ids,
        **({"dag_id_differences": {"only_airbuild": sorted(airbuild_ids - peer_ids),
                                   "only_peer": sorted(peer_ids - airbuild_ids)}} if airbuild_ids != peer_ids else {}),
        "ratios": {
            "peer_full_over_airbuild_cold": round(peer_full / airbuild_numbers["cold"]["wall_s"]["median"], 2),
            "peer_full_over_airbuild_one_edit": round(peer_full / airbuild_numbers["one_edit"]["wall_s"]["median"], 2),
            "peer_full_over_airbuild_cached": round(peer_full / airbuild_numbers["cached"]["wall_s"]["median"], 2),
        },
        "diagnostics": diag,
        "machine": machine(load_before),
    }
    emit(report, args.out)
    return 0 if airbuild_numbers["cold"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
