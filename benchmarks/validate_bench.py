"""Benchmark cold DAG validation: `airbuild parse` (parallel workers, and one worker) against one plain
DagBag over the same folder, on 200 generated, realistic DAG files.

    python3 benchmarks/validate_bench.py [--files 200] [--repeat 3] [--out FILE]

The files are generated deterministically (a fixed seed): operators of the standard provider
(Bash, Python, Empty, ShortCircuit, BranchPython, sensors), task groups, dynamic task mapping
(`expand`), params, @task functions, and a shared helper module under dags/ that some import.
The project is parse_bench.py's (apache-airflow==3.3.2 on scripts/debian-rootfs, the test
suite's store); the peer is its one-process DagBag under bwrap over the same unpacked
environment. Prints one JSON object on stdout (progress goes to stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parse_bench  # noqa: E402  (the project, the store, airbuild's parse and the peer)

from parse_bench import log  # noqa: E402
from report import emit, machine  # noqa: E402

SEED = 19

HELPER = '''"""Shared helpers of the generated project (not a DAG file: no DAG word in it)."""
import hashlib


def checksum(text):
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def batches(count):
    return [{"batch": n, "key": checksum(str(n))} for n in range(count)]
'''

HEADER = '''"""Generated {name}: an airflow dag of team {team}."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, TaskGroup, task
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
{helper_import}

def _transform(**context):
    return json.dumps(context.get("params", {{}}))


def _choose(**context):
    return "{name}_report.publish"


with DAG(
    dag_id="{name}",
    start_date=datetime(2024, 1, 1),
    schedule="{schedule}",
    catchup=False,
    default_args={{"retries": {retries}, "retry_delay": timedelta(minutes={delay})}},
    tags=["team_{team}", "generated"],
    params={{
        "region": Param("{region}", type="string", enum=["eu", "us", "ap"]),
        "limit": Param({limit}, type="integer", minimum=1),
        "dry_run": Param(False, type="boolean"),
    }},
) as dag:
    start = EmptyOperator(task_id="start")
    wait = TimeDeltaSensor(task_id="wait", delta=timedelta(minutes={delay}), mode="reschedule")
    gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: True)
    start >> wait >> gate
    previous = gate
'''

GROUP = '''
    with TaskGroup(group_id="{group}") as {group}:
        extract = BashOperator(task_id="extract", bash_command="echo {{{{ params.region }}}} {group}")
        steps = [PythonOperator(task_id=f"step_{{n}}", python_callable=_transform) for n in range({steps})]
        load = EmptyOperator(task_id="load")
        extract >> steps >> load
    previous >> {group}
    previous = {group}
'''

MAPPED = '''

    @task
    def list_{group}():
        return {items}

    @task
    def handle_{group}(item, factor):
        return item * factor

    handled_{group} = handle_{group}.partial(factor={factor}).expand(item=list_{group}())
    previous >> handled_{group}
'''

HELPER_MAPPED = '''
    check = PythonOperator.partial(task_id="check_batches", python_callable=_transform).expand(
        op_kwargs=batches({count}))
    previous >> check
'''

FOOTER = '''
    with TaskGroup(group_id="{name}_report") as report:
        branch = BranchPythonOperator(task_id="branch", python_callable=_choose)
        publish = BashOperator(task_id="publish", bash_command="echo done")
        skip = EmptyOperator(task_id="skip")
        branch >> [publish, skip]
    previous >> report >> EmptyOperator(task_id="end", trigger_rule="none_failed")
'''


def dag_source(index: int, rng: random.Random) -> str:
    name = f"pipeline_{index:03d}"
    uses_helper = index % 3 == 0
    parts = [HEADER.format(name=name, team=index % 7, schedule=rng.choice(["@daily", "@hourly", "0 6 * * 1-5"]),
                           retries=rng.randint(0, 3), delay=rng.randint(1, 30), region=rng.choice(["eu", "us", "ap"]),
                           limit=rng.randint(10, 1000),
                           helper_import="from common_helpers import batches\n" if uses_helper else "")]
    for group in range(rng.randint(3, 6)):
        parts.append(GROUP.format(group=f"stage_{group}", steps=rng.randint(3, 8)))
    for group in range(rng.randint(1, 3)):
        parts.append(MAPPED.format(group=f"fan_{group}", items=list(range(rng.randint(2, 9))),
                                   factor=rng.randint(2, 5)))
    if uses_helper:
        parts.append(HELPER_MAPPED.format(count=rng.randint(2, 6)))
    parts.append(FOOTER.format(name=name))
    return "".join(parts)


def generate(dags: Path, files: int) -> None:
    """`files` DAG files (and one helper module) into `dags/`: the same bytes on every run."""
    rng = random.Random(SEED)
    for old in dags.glob("*.py"):
        old.unlink()
    (dags / "common_helpers.py").write_text(HELPER)
    for index in range(files):
        (dags / f"pipeline_{index:03d}.py").write_text(dag_source(index, rng))


def comparable(report: dict) -> list[dict]:
    """A report's results without what differs between runs (times, cache flags)."""
    return [{"file": f["file"], "dags": f["dags"], "errors": f["errors"]} for f in report["files"]]


def airbuild_runs(project: Path, base: Path, repeat: int, workers: int | None) -> tuple[list[dict], dict]:
    runs = []
    extra = ["--workers", str(workers)] if workers else []
    for n in range(repeat):
        log(f"airbuild parse {'--workers ' + str(workers) if workers else '(default workers)'}, cold {n + 1}/{repeat}")
        parse_bench.clear_results()
        runs.append(parse_bench.airbuild_parse(project, base, *extra))
    return runs, runs[-1]["_report"]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def summary(runs: list[dict]) -> dict:
    last = runs[-1]
    return {"wall_s": spread([r["wall_s"] for r in runs]), "cpu_s": spread([r["cpu_s"] for r in runs]),
            "duration_s": spread([r["duration_s"] for r in runs]),
            "children_s": spread([r["children_s"] for r in runs]), "workers": last["workers"],
            "imported": last["imported"], "files": last["files"], "dags": last["dags"],
            "errors": max(r["errors"] for r in runs), "status": sorted({r["status"] for r in runs})}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="cold `airbuild parse` (parallel and serial) vs one DagBag, "
                                                 "on generated realistic DAG files")
    parser.add_argument("--files", type=int, default=200, help="generated DAG files (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.files < 1 or args.repeat < 1:
        parser.error("--files and --repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("bwrap") is None:
        log("bwrap is not on PATH: both sides need it")
        return 2
    base = parse_bench.debian_rootfs()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="airbuild-validate-bench-") as tmp:
        project = Path(tmp) / "project"
        rootfs = parse_bench.setup_project(project, base)
        (project / "dags" / "placeholder.py").unlink()
        generate(project / "dags", args.files)
        log(f"project: {args.files} generated DAG files")
        # Interleaved, so a change of the machine's load touches every case alike.
        parallel, serial, peer = [], [], []
        for n in range(args.repeat):
            parallel += airbuild_runs(project, base, 1, None)[0]
            serial += airbuild_runs(project, base, 1, 1)[0]
            log(f"peer: DagBag in one bwrap process {n + 1}/{args.repeat}")
            peer.append(parse_bench.peer_run(rootfs, project))
    parallel_report, serial_report = parallel[-1]["_report"], serial[-1]["_report"]
    peer_ids = set(peer[-1]["dag_ids"])
    airbuild_ids = {d["dag_id"] for f in parallel_report["files"] for d in f["dags"]}
    peer_s = statistics.median(r["wall_s"] for r in peer)
    report = {
        "project": {"files": args.files, "seed": SEED, "airflow": parse_bench.AIRFLOW, "env_chain": rootfs.name},
        "airbuild_parallel": summary(parallel),
        "airbuild_one_worker": summary(serial),
        "peer_dagbag": {"wall_s": spread([r["wall_s"] for r in peer]), "cpu_s": spread([r["cpu_s"] for r in peer]),
                        "fill_s": spread([r["fill_s"] for r in peer]),
                        "airflow_import_s": spread([r["import_s"] for r in peer]), "files": peer[-1]["files"],
                        "dags": len(peer_ids), "errors": len(peer[-1]["errors"])},
        "parallel_results_identical_to_serial": comparable(parallel_report) == comparable(serial_report),
        "same_dag_ids_as_peer": airbuild_ids == peer_ids,
        "ratios": {
            "peer_over_airbuild_parallel": round(peer_s / statistics.median(r["wall_s"] for r in parallel), 2),
            "peer_over_airbuild_one_worker": round(peer_s / statistics.median(r["wall_s"] for r in serial), 2),
            # CPU time of everything each side ran (less sensitive to the load than wall time)
            "airbuild_parallel_cpu_over_peer_cpu": round(statistics.median(r["cpu_s"] for r in parallel)
                                                         / statistics.median(r["cpu_s"] for r in peer), 2),
        },
        "target_1_5x_met": peer_s / statistics.median(r["wall_s"] for r in parallel) >= 1.5,
        "machine": machine(load_before),
    }
    emit(report, args.out)
    ok = report["parallel_results_identical_to_serial"] and report["airbuild_parallel"]["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
