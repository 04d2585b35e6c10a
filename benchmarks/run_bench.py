"""Benchmark a project whose Dockerfile has a RUN line: airbuild (RUN in BuildKit, everything else native)
against plain `docker build` of the same Dockerfile, in the same run, from the same Debian base.

    python3 benchmarks/run_bench.py [--dags 1000] [--include-mb 50] [--repeat 3] [--run "COMMAND"] [--out FILE]

Docker's base gets Astro's ONBUILD `COPY --chown=astro:0 . .`, so `docker build` of the
Dockerfile behaves as with an Astro runtime image (the project, then the RUN); airbuild reads
the same Dockerfile with `--base rootfs:` (it drops ONBUILD: its rules make those layers).
Prints one JSON object on stdout (progress on stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bench  # noqa: E402  (shared helpers: the project, timing, the docker driver, the base)

RUN = ("apt-get update -q && apt-get install -y -q --no-install-recommends jq "
       "&& rm -rf /var/lib/apt/lists/*")
DOCKERFILE = f"""\
FROM {bench.BASE_TAG}
ENV AIRFLOW__CORE__LOAD_EXAMPLES=False
USER root
RUN {{run}}
USER astro
"""
ONBUILD = ["WORKDIR /usr/local/airflow", "USER astro", "ONBUILD COPY --chown=astro:0 . ."]


def prune_engine(client: str) -> None:
    """No BuildKit cache and no parent image airbuild loaded earlier: both tools start cold."""
    subprocess.run([client, "builder", "prune", "-af"], capture_output=True, check=True)
    listed = subprocess.run([client, "image", "ls", "-q", "airbuild-parent/*"], capture_output=True, text=True)
    if listed.stdout.split():
        subprocess.run([client, "image", "rm", "-f", *set(listed.stdout.split())], capture_output=True)


def engine_builds(result: dict) -> int:
    return (result.get("engine") or {}).get("builds", 0)


def bench_airbuild(template: Path, work: Path, base: Path, repeat: int, client: str) -> dict:
    project, store = work / "airbuild", work / "store"
    shutil.copytree(template, project, symlinks=True)
    prune_engine(client)
    bench.log("airbuild: cold build (empty store, no BuildKit cache, base not in dockerd)")
    cold_s, result = bench.airbuild(project, store, base)
    assert engine_builds(result) == 1, result.get("engine")
    cold_run_layer = next(l for l in result["layers"] if l["rule"].startswith("dockerfile:RUN"))

    noop, noop_builds = [], 0
    for n in range(repeat):
        bench.log(f"airbuild: no-op rebuild {n + 1}/{repeat}")
        wall, result = bench.airbuild(project, store, base)
        noop.append(wall)
        noop_builds += engine_builds(result)

    edit, edit_internal, edit_builds, only_dags = [], [], 0, True
    for n in range(repeat):
        bench.log(f"airbuild: one-DAG edit {n + 1}/{repeat}")
        previous = result["manifest_digest"]
        bench.edit_dag(project, n)
        wall, result = bench.airbuild(project, store, base)
        edit.append(wall)
        edit_internal.append(result["duration_s"])
        edit_builds += engine_builds(result)
        only_dags = only_dags and bench.only_dags_rebuilt(result, previous)

    bench.log("airbuild: RUN layer from the store with the engine's cache pruned (another checkout)")
    prune_engine(client)
    other = work / "airbuild-other"
    shutil.copytree(project, other, symlinks=True, ignore=shutil.ignore_patterns(".airbuild"))
    other_s, other_result = bench.airbuild(other, store, base)
    return {
        "cold_s": round(cold_s, 4),
        "run_layer_size": cold_run_layer["size"],
        "noop_s": bench.spread(noop),
        "dag_edit_s": bench.spread(edit),
        "dag_edit_internal_s": bench.spread(edit_internal),
        "only_dag_layer_rebuilt": only_dags,
        "buildkit_runs_after_cold": noop_builds + edit_builds,
        "other_checkout_pruned_engine_s": round(other_s, 4),
        "other_checkout_buildkit_runs": engine_builds(other_result),
    }


def bench_docker(docker: bench.Docker, template: Path, work: Path, base: Path, repeat: int) -> dict:
    project = work / "docker"
    shutil.copytree(template, project, symlinks=True)
    bench.log(f"docker: importing the base as {bench.BASE_TAG} with Astro's ONBUILD (not timed)")
    docker.run("import", *[arg for change in ONBUILD for arg in ("--change", change)], str(base), bench.BASE_TAG)
    return bench.docker_numbers(docker, project, repeat)  # a DAG edit runs the RUN again: COPY . . is below it


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="airbuild vs docker build on a project with a RUN line")
    parser.add_argument("--dags", type=int, default=1000, help="number of DAG files (default 1000)")
    parser.add_argument("--include-mb", type=float, default=50.0, help="MiB of data under include/ (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="no-op and DAG-edit builds of each tool (default 3)")
    parser.add_argument("--run", default=RUN, help=f"the RUN line's command (default: {RUN})")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    client = bench.buildkit_client()
    if client is None:
        print("no docker CLI on PATH can run BuildKit builds", file=sys.stderr)
        return 1
    base = bench.debian_rootfs()
    dockerfile = DOCKERFILE.format(run=args.run)
    with tempfile.TemporaryDirectory(prefix="airbuild-run-bench-") as tmp:
        work = Path(tmp)
        bench.log(f"generating {args.dags} DAGs and {args.include_mb} MiB of include/ data in {work}")
        files = bench.generate_project(work / "template", args.dags, args.include_mb)
        (work / "template" / "Dockerfile").write_text(dockerfile)
        _age(work / "template")
        os.environ["AIRBUILD_DOCKER"] = client  # airbuild uses the CLI docker build uses
        airbuild_numbers = bench_airbuild(work / "template", work, base, args.repeat, client)
        docker = bench.Docker(client, work / "template" / "Dockerfile", work / "docker.iid")
        try:
            docker_numbers = bench_docker(docker, work / "template", work, base, args.repeat)
        finally:
            bench.log("docker: removing the images and build cache this run made")
            docker.clean_up()
            prune_engine(client)

    report = {
        "project": {"dags": args.dags, "include_mb": args.include_mb, "files": files, "dockerfile": dockerfile},
        "airbuild": airbuild_numbers,
        "docker_build": docker_numbers,
        "ratios": {
            "cold": round(docker_numbers["cold_s"] / airbuild_numbers["cold_s"], 2),
            "noop": round(docker_numbers["noop_s"]["median"] / airbuild_numbers["noop_s"]["median"], 2),
            "dag_edit": round(docker_numbers["dag_edit_s"]["median"] / airbuild_numbers["dag_edit_s"]["median"], 2),
        },
    }
    bench.emit(report, args.out)
    return 0


def _age(root: Path, seconds: int = 3600) -> None:
    """Files older than the no-op stamp's racy margin, as in a real checkout."""
    then = time.time() - seconds
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(directory, name), (then, then), follow_symlinks=False)


if __name__ == "__main__":
    sys.exit(main())
