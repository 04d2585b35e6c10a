"""Two CI runners, one shared cache: airbuild's registry cache against BuildKit's inline cache.

    python3 benchmarks/ci_bench.py [--dags 1000] [--include-mb 5] [--packages curl] [--out FILE]

The project (build_bench's generator) has Airflow 3.3.2 in requirements.txt, a packages.txt and
`--dags` DAG files, committed with its astro.lock. Runner A (an empty store, an empty uv cache)
builds it `--locked` with the shared cache in a loopback registry and deploys it; runner B (another
empty store and uv cache, a fresh clone) does the same for the same commit. The same two runs with
`docker build --cache-from` (inline cache, BUILDKIT_INLINE_CACHE=1) and `docker push`, runner B
starting from an empty Docker build cache. Prints one JSON object (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (shared helpers: the project generator, timing, the docker driver)
from deploy_bench import start_registry  # noqa: E402
from python_bench import CA_FILE, host_ca_bundle  # noqa: E402
from report import emit  # noqa: E402

AIRFLOW = "apache-airflow==3.3.2"
BASE_TAG = "airbuild-cibench-base:latest"


def docker_file(with_ca: bool) -> str:
    """What an Astro project's image does, in one Dockerfile: packages, requirements, then the files."""
    mount = f"--mount=type=bind,source={CA_FILE},target=/tmp/{CA_FILE} " if with_ca else ""
    cert = f" --cert /tmp/{CA_FILE}" if with_ca else ""
    return f"""\
FROM {BASE_TAG}
COPY packages.txt /tmp/packages.txt
RUN apt-get update -q && sed -e 's/#.*//' /tmp/packages.txt | xargs apt-get install -y -q --no-install-recommends \\
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN {mount}python3 -m pip install --break-system-packages --no-cache-dir{cert} -r /tmp/requirements.txt
COPY --chown={bb.OWNER} {' '.join(sorted(bb.TOP_LEVEL))} {bb.WORKDIR}/
COPY --chown={bb.OWNER} include {bb.WORKDIR}/include
COPY --chown={bb.OWNER} plugins {bb.WORKDIR}/plugins
COPY --chown={bb.OWNER} dags {bb.WORKDIR}/dags
USER astro
"""


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})


def make_commit(work: Path, dags: int, include_mb: float, packages: str, base: Path) -> Path:
    """The project as CI checks it out: generated, locked (resolved once, not timed) and committed."""
    origin = work / "origin"
    bb.generate_project(origin, dags, include_mb)
    (origin / "requirements.txt").write_text(AIRFLOW + "\n")
    (origin / "packages.txt").write_text("\n".join(packages.split()) + "\n")
    bb.log("preparing the commit: airbuild lock (not timed)")
    subprocess.run([sys.executable, "-m", "builder", "lock", str(origin), "--base", f"rootfs:{base}"], check=True,
                   cwd=bb.REPO, env={**os.environ, "AIRBUILD_CACHE_DIR": str(work / "lock-store"),
                                     "PYTHONPATH": str(bb.REPO)}, capture_output=True)
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "the commit both runners build")
    return origin


def airbuild_runner(name: str, origin: Path, work: Path, base: Path, cache: str, target: str) -> dict:
    checkout = work / f"checkout-{name}"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(work / f"store-{name}"), "UV_CACHE_DIR": str(work / f"uv-{name}"),
           "PYTHONPATH": str(bb.REPO), "AIRBUILD_CACHE_REPO": cache}
    bb.log(f"airbuild runner {name}: build --locked with the shared cache")
    build_s, done = bb.timed([sys.executable, "-m", "builder", "build", str(checkout), "--base", f"rootfs:{base}",
                              "--locked", "--json"], cwd=bb.REPO, env=env)
    built = json.loads(done.stdout)
    bb.log(f"airbuild runner {name}: deploy")
    deploy_s, done = bb.timed([sys.executable, "-m", "builder", "deploy", str(checkout), "--base", f"rootfs:{base}",
                               "--locked", "--to", target, "--json"], cwd=bb.REPO, env=env)
    deployed = json.loads(done.stdout)
    own = [layer for layer in built["layers"] if layer["rule"] != "base"]
    return {
        "wall_s": round(build_s + deploy_s, 3), "build_s": round(build_s, 3), "deploy_s": round(deploy_s, 3),
        "cache_downloaded_bytes": built["cache"]["downloaded_bytes"],
        "cache_uploaded_bytes": built["cache"]["uploaded_bytes"],
        "deploy_uploaded_bytes": deployed["bytes_uploaded"], "deploy_blobs_mounted": deployed["blobs_mounted"],
        "layers_rebuilt": sum(1 for layer in own if layer["source"] == "built"),
        "layers_from_cache": sum(1 for layer in own if layer["source"] == "remote"),
        "dag_files_imported": (built["validation"] or {}).get("imported"),
        "manifest_digest": built["manifest_digest"],
    }


def docker_runner(name: str, client: str, origin: Path, work: Path, image: str, cache_from: str | None,
                  ca_bundle: Path | None) -> dict:
    checkout = work / f"docker-{name}"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
    if ca_bundle:
        shutil.copyfile(ca_bundle, checkout / CA_FILE)
    (work / "Dockerfile.ci").write_text(docker_file(ca_bundle is not None))
    subprocess.run([client, "builder", "prune", "-af"], capture_output=True)
    command = [client, "build", "--network", "host", "--progress", "plain", "-f", str(work / "Dockerfile.ci"),
               "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", image]
    if cache_from:
        command += ["--cache-from", cache_from]
    bb.log(f"docker runner {name}: build{' --cache-from ' + cache_from if cache_from else ''}")
    build_s, done = bb.timed(command + [str(checkout)], env={**os.environ, "DOCKER_BUILDKIT": "1"})
    log = done.stderr + done.stdout
    bb.log(f"docker runner {name}: push")
    push_s, _ = bb.timed([client, "push", "-q", image])
    steps = [line for line in log.splitlines() if line.startswith("#") and "] RUN " in line]
    return {"wall_s": round(build_s + push_s, 3), "build_s": round(build_s, 3), "push_s": round(push_s, 3),
            "run_steps_cached": sum(1 for line in steps if f"{line.split()[0]} CACHED" in log.splitlines()),
            "run_steps": len(steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--include-mb", type=float, default=5)
    parser.add_argument("--packages", default="curl")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="airbuild-cibench-"))
    (work / "registry").mkdir()
    registry, port = start_registry(work / "registry")
    report: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version()},
                    "project": {"dags": args.dags, "include_mb": args.include_mb, "requirements": AIRFLOW,
                                "packages": args.packages}}
    try:
        base = bb.debian_rootfs("python3-pip")
        origin = make_commit(work, args.dags, args.include_mb, args.packages, base)
        where = f"127.0.0.1:{port}"
        cache, target = f"{where}/team/airbuild-cache", f"{where}/team/airflow"
        a = airbuild_runner("a", origin, work, base, cache, target)
        b = airbuild_runner("b", origin, work, base, cache, target)
        report["airbuild"] = {"runner_a": a, "runner_b": b, "same_digest": a["manifest_digest"] == b["manifest_digest"],
                              "speedup_b_over_a": round(a["wall_s"] / b["wall_s"], 2)}
        client, missing = bb.usable_buildkit_client()
        if client is None:
            report["docker"] = {"skipped": missing}
        else:
            subprocess.run([client, "import", str(base), BASE_TAG], check=True, capture_output=True)
            image = f"{where}/team/docker"
            try:
                da = docker_runner("a", client, origin, work, f"{image}:a", None, host_ca_bundle())
                subprocess.run([client, "rmi", "-f", f"{image}:a"], capture_output=True)
                db = docker_runner("b", client, origin, work, f"{image}:b", f"{image}:a", host_ca_bundle())
            finally:
                subprocess.run([client, "rmi", "-f", f"{image}:a", f"{image}:b", BASE_TAG], capture_output=True)
                subprocess.run([client, "builder", "prune", "-af"], capture_output=True)
            report["docker"] = {"runner_a": da, "runner_b": db,
                                "speedup_b_over_a": round(da["wall_s"] / db["wall_s"], 2)}
            report["ratio_runner_b_docker_over_airbuild"] = round(db["wall_s"] / b["wall_s"], 2)
    finally:
        registry.terminate()
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
