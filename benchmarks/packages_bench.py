"""Benchmark installing packages.txt: airbuild's system-packages layer against `apt-get install`
in a Dockerfile built by BuildKit, in the same run, from the same Debian base.

    python3 benchmarks/packages_bench.py [--packages "curl git jq libpq5 unzip"] [--repeat 3] [--out FILE]

Prints one JSON object on stdout (progress on stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bench  # noqa: E402  (shared helpers: timing, the docker driver, the base)
from report import emit  # noqa: E402

# what real Astro projects carry (tests/test_debian_fidelity.py: apt chooses the same 143 packages)
PACKAGES = "build-essential libpq-dev git curl unixodbc-dev libsasl2-dev graphviz openjdk-17-jre-headless"
DOCKERFILE = f"""\
FROM {bench.BASE_TAG}
COPY packages.txt /tmp/packages.txt
RUN apt-get update -q && sed -e 's/#.*//' /tmp/packages.txt | xargs apt-get install -y -q --no-install-recommends \\
    && rm -rf /var/lib/apt/lists/*
"""


def make_project(path: Path, packages: list[str]) -> None:
    (path / "dags").mkdir(parents=True)
    (path / "Dockerfile").write_text(f"FROM {bench.BASE_TAG}\n")
    (path / "packages.txt").write_text("# five common system packages\n" + "\n".join(packages) + "\n")
    (path / "dags" / "hello.py").write_text("# a DAG\n")


def airbuild(project: Path, store: Path, base: Path, own_process: bool = False) -> tuple[float, dict]:
    """One build: wall seconds and the system-packages layer, with `peak_rss_mb`: the largest resident set
    of airbuild and of the processes it waited for (dpkg and the scripts in the sandbox among them)."""
    # own_process (no build server): wait4 then sees the build's work, not a client's. Warm builds are
    # served, as a user's are.
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(store), **({"AIRBUILD_SERVER": "0"} if own_process else {})}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "builder", "build", str(project), "--base",
                                 f"rootfs:{base}", "--json"], cwd=bench.REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 gives the child's resource usage
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"airbuild build failed ({proc.returncode}): {err.read()[-2000:]}")
        layer = next(l for l in json.loads(out.read())["layers"] if l["rule"] == "system-packages")
    return wall, {**layer, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def bench_airbuild(work: Path, base: Path, packages: list[str], repeat: int) -> dict:
    cold, warm_locked, warm_unlocked, size, rss = [], [], [], None, []
    for n in range(repeat):
        store = work / f"store-{n}"
        seed = work / f"seed-{n}"
        seed.mkdir()
        (seed / "Dockerfile").write_text("FROM scratch\n")
        bench.log(f"airbuild: importing the base into a fresh store {n + 1}/{repeat} (not timed)")
        bench.airbuild(seed, store, base)
        project = work / f"cold-{n}"
        make_project(project, packages)
        bench.log(f"airbuild: cold (no indexes, no .debs, no lock) {n + 1}/{repeat}")
        wall, layer = airbuild(project, store, base, own_process=True)
        assert not layer["cached"]
        cold.append(wall)
        size = layer["size"]
        rss.append(layer["peak_rss_mb"])

        locked = work / f"locked-{n}"
        make_project(locked, packages)
        shutil.copy(project / "astro.lock", locked / "astro.lock")
        bench.log(f"airbuild: warm, another checkout with the lock, shared store {n + 1}/{repeat}")
        wall, layer = airbuild(locked, store, base)
        assert layer["cached"]
        warm_locked.append(wall)

        unlocked = work / f"unlocked-{n}"
        make_project(unlocked, packages)
        bench.log(f"airbuild: warm, no lock (resolve again: InRelease fetched, indexes cached) {n + 1}/{repeat}")
        wall, layer = airbuild(unlocked, store, base)
        assert layer["cached"]
        warm_unlocked.append(wall)
    return {"cold_s": bench.spread(cold), "cold_peak_rss_mb": max(rss), "warm_locked_s": bench.spread(warm_locked),
            "warm_resolve_s": bench.spread(warm_unlocked), "layer_size": size}


def bench_docker(work: Path, base: Path, packages: list[str], repeat: int) -> tuple[dict | None, str | None]:
    client = bench.buildkit_client()
    if client is None:
        return None, "no docker CLI on PATH can run BuildKit builds (no buildx plugin, CLI >= 23)"
    project = work / "docker"
    make_project(project, packages)
    (work / "Dockerfile.apt").write_text(DOCKERFILE)
    docker = bench.Docker(client, work / "Dockerfile.apt", work / "docker.iid")
    try:
        bench.log(f"docker: importing the base as {bench.BASE_TAG} (not timed)")
        docker.run("import", str(base), bench.BASE_TAG)
        cold, warm = [], []
        for n in range(repeat):
            docker.reset()
            bench.log(f"docker: cold apt-get install (no build cache) {n + 1}/{repeat}")
            cold.append(docker.build(project))
            bench.log(f"docker: warm rebuild (build cache) {n + 1}/{repeat}")
            warm.append(docker.build(project))
        return {"cold_s": bench.spread(cold), "warm_s": bench.spread(warm),
                "docker_storage_driver": docker.run("info", "--format", "{{.Driver}}").stdout.strip()}, None
    except RuntimeError as exc:
        return None, str(exc)
    finally:
        bench.log("docker: removing the images and build cache this run made")
        docker.clean_up()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", default=PACKAGES, help=f"space-separated (default: {PACKAGES})")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    packages = args.packages.split()
    base = bench.debian_rootfs()
    with tempfile.TemporaryDirectory(prefix="airbuild-packages-bench-") as tmp:
        work = Path(tmp)
        ours = bench_airbuild(work, base, packages, args.repeat)
        theirs, skipped = bench_docker(work, base, packages, args.repeat)
    result = {"packages": packages, "repeat": args.repeat, "airbuild": ours, "docker_apt_get": theirs}
    if skipped:
        result["docker_skipped"] = skipped
    if theirs:
        result["ratios"] = {"cold": round(theirs["cold_s"]["median"] / ours["cold_s"]["median"], 2),
                            "warm": round(theirs["warm_s"]["median"] / ours["warm_locked_s"]["median"], 2)}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
