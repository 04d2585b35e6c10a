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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bench  # noqa: E402  (shared helpers: timing, the docker driver, the base)

PACKAGES = "curl git jq libpq5 unzip"
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


def airbuild(project: Path, store: Path, base: Path) -> tuple[float, dict]:
    wall, result = bench.airbuild(project, store, base)
    layer = next(l for l in result["layers"] if l["rule"] == "system-packages")
    return wall, layer


def bench_airbuild(work: Path, base: Path, packages: list[str], repeat: int) -> dict:
    cold, warm_locked, warm_unlocked, size = [], [], [], None
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
        wall, layer = airbuild(project, store, base)
        assert not layer["cached"]
        cold.append(wall)
        size = layer["size"]

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
    return {"cold_s": bench.spread(cold), "warm_locked_s": bench.spread(warm_locked),
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
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
