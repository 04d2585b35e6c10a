"""Benchmark `airbuild run` against `docker run IMAGE airflow dags test` of the same image, in one run.

    python3 benchmarks/dag_run_bench.py [--project examples/quickstart] [--dag example_etl] [--repeat 2]

The project is built into a fresh store first (timed apart: that is `build`). Then, both with
no network:
- airbuild: `airbuild run DAG` twice or more: the first is cold (the environment is unpacked and
  its bytecode compiled in the store), the later ones warm;
- docker: the built archive `docker load`ed, then `docker run IMAGE` with the database
  migrated and `airflow dags test DAG`, as a developer without airbuild would run it (every run
  starts from the image, so cold and warm cost the same, after the load).
Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.monotonic() - started, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "quickstart")
    parser.add_argument("--dag", default="example_etl")
    parser.add_argument("--repeat", type=int, default=2, help="warm runs of each tool (default 2)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="airbuild-run-bench-"))
    project = work / "project"
    shutil.copytree(args.project, project, ignore=shutil.ignore_patterns(".airbuild"))
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(work / "store"), "PYTHONPATH": str(REPO)}
    airbuild = [sys.executable, "-m", "builder"]
    try:
        print("building the project into a fresh store", file=sys.stderr)
        archive = work / "image.tar"
        build_s, proc = timed([*airbuild, "build", str(project), "--archive", str(archive), "--json"], env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        runs = []
        for attempt in range(1 + args.repeat):
            print(f"airbuild run {args.dag} ({'cold' if attempt == 0 else 'warm'})", file=sys.stderr)
            seconds, proc = timed([*airbuild, "run", args.dag, str(project), "--network", "none", "--json"], env)
            state = json.loads(proc.stdout)["state"] if proc.stdout.strip().startswith("{") else proc.stderr[-500:]
            runs.append({"seconds": round(seconds, 2), "state": state})

        print("docker load", file=sys.stderr)
        load_s, proc = timed(["docker", "load", "-i", str(archive)])
        image = proc.stdout.strip().rsplit(" ", 1)[-1]
        docker_runs = []
        try:
            for _ in range(1 + args.repeat):
                print(f"docker run {image} airflow dags test {args.dag}", file=sys.stderr)
                seconds, proc = timed(["docker", "run", "--rm", "--network", "none", "--user", "0",
                                       "-e", "AIRFLOW_HOME=/usr/local/airflow", image, "bash", "-c",
                                       f"airflow db migrate >/dev/null && airflow dags test {args.dag}"])
                docker_runs.append({"seconds": round(seconds, 2),
                                    "state": "success" if proc.returncode == 0 else f"exit {proc.returncode}"})
        finally:
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    warm = statistics.median(r["seconds"] for r in runs[1:]) if len(runs) > 1 else None
    docker_warm = statistics.median(r["seconds"] for r in docker_runs)
    print(json.dumps({
        "benchmark": "dag_run", "project": str(args.project), "dag": args.dag, "machine": os.uname().machine,
        "cpus": os.cpu_count(), "build_fresh_store_s": round(build_s, 2),
        "airbuild_run": {"cold_s": runs[0]["seconds"], "warm_median_s": warm, "runs": runs},
        "docker": {"load_s": round(load_s, 2), "run_median_s": docker_warm, "runs": docker_runs},
        "ratio_cold": round((load_s + docker_runs[0]["seconds"]) / runs[0]["seconds"], 2),
        "ratio_warm": round(docker_warm / warm, 2) if warm else None,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
