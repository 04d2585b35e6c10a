"""Benchmark airbuild's python-requirements layer against `pip install` under BuildKit.

    python3 benchmarks/python_bench.py [--quick | --requirements FILE] [--repeat 3] [--validate] [--pip-no-compile]
        [--out FILE]

Resolves and installs apache-airflow plus two providers (`--quick`: two small
distributions) cold and warm with both tools, then adds one small package to
requirements.txt (`add_package`: airbuild with the other wheels in its store, its time
split into resolve / fetch / split / install / tar / compress; pip and uv in a Dockerfile
under BuildKit, uv with a cache mount). Prints one JSON object on stdout (progress goes
to stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_bench import (  # noqa: E402  (the sibling module, found through the path above)
    DAG_TEMPLATE, OWNER, REPO, TOP_LEVEL, WORKDIR, Docker, debian_rootfs, log, spread, timed,
    tiny_project, usable_buildkit_client,
)
from report import emit, machine  # noqa: E402

# Pins that resolve for CPython 3.11 on linux x86_64 without Airflow's constraints file.
FULL = ["apache-airflow==2.10.5", "apache-airflow-providers-postgres==6.4.1", "apache-airflow-providers-http==5.5.0"]
QUICK = ["PyYAML==6.0.2", "requests==2.32.3"]
ADDED = "toolz==1.0.0"  # small, pure Python, in neither set's dependencies
UV = "0.13.9"           # the uv the BuildKit peer installs into its base
RULE = "python-requirements"
BASE_TAG = "airbuild-pybench-base:latest"
IMAGE_TAG = "airbuild-pybench:latest"
EDITED_DAG = "dags/hello.py"
CA_FILE = "host-ca.pem"  # in the BuildKit context only, never in a layer


def buildkit_dockerfile(no_compile: bool, with_ca: bool) -> str:
    """Astro's ONBUILD order: requirements first, then the project files, `dags` last.

    With `with_ca`, pip trusts the host's CA bundle (bind-mounted from the context, in no layer),
    so a TLS-intercepting proxy the host trusts works in the build too.
    """
    flags = "--break-system-packages --no-cache-dir" + (" --no-compile" if no_compile else "")
    mount = f"--mount=type=bind,source={CA_FILE},target=/tmp/{CA_FILE} " if with_ca else ""
    cert = f" --cert /tmp/{CA_FILE}" if with_ca else ""
    return f"""\
FROM {BASE_TAG}
COPY requirements.txt /tmp/requirements.txt
RUN {mount}python3 -m pip install {flags}{cert} -r /tmp/requirements.txt
COPY --chown={OWNER} {' '.join(sorted(TOP_LEVEL))} {WORKDIR}/
COPY --chown={OWNER} dags {WORKDIR}/dags
USER astro
"""


def uv_dockerfile(with_ca: bool) -> str:
    """The same build with uv (a cache mount keeps its wheels between builds, as airbuild's store does)."""
    mount = f"--mount=type=bind,source={CA_FILE},target=/tmp/{CA_FILE} " if with_ca else ""
    cert = f"SSL_CERT_FILE=/tmp/{CA_FILE} " if with_ca else ""
    return f"""\
FROM {BASE_TAG}
RUN {mount}{cert}python3 -m pip install --break-system-packages --no-cache-dir{' --cert /tmp/' + CA_FILE if with_ca else ''} uv=={UV}
COPY requirements.txt /tmp/requirements.txt
RUN {mount}--mount=type=cache,target=/root/.cache/uv {cert}uv pip install --system --break-system-packages -r /tmp/requirements.txt
COPY --chown={OWNER} {' '.join(sorted(TOP_LEVEL))} {WORKDIR}/
COPY --chown={OWNER} dags {WORKDIR}/dags
USER astro
"""


def add_package(project: Path) -> None:
    with open(project / "requirements.txt", "a") as handle:
        handle.write(f"{ADDED}\n")


def write_project(path: Path, requirements: list[str]) -> None:
    path.mkdir(parents=True)
    for name, text in TOP_LEVEL.items():
        (path / name).write_text(text)
    (path / "requirements.txt").write_text("".join(f"{line}\n" for line in requirements))
    (path / "dags").mkdir()
    (path / EDITED_DAG).write_text(DAG_TEMPLATE.format(
        title="The DAG the warm builds edit.", about="One small DAG.", dag_id="hello", team="team_00",
        schedule="@daily", month=1, day=1, retries=1, rows=10, factor=2))


def edit_dag(project: Path, counter: int) -> None:
    with open(project / EDITED_DAG, "a") as handle:
        handle.write(f"# benchmark edit {counter}\n")


# -- airbuild -------------------------------------------------------------------


class AirbuildFailed(RuntimeError):
    pass


VALIDATE = False  # `--validate`: let airbuild import the DAGs in its sandbox (BuildKit does nothing alike)


def airbuild(project: Path, store: Path, uv_cache: Path, base: Path, phase_file: Path | None = None) -> tuple[float, dict]:
    """One `airbuild build --json` with its own store and uv cache: wall seconds and the result."""
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(store), "UV_CACHE_DIR": str(uv_cache),
           **({"AIRBUILD_PHASE_TIMES": str(phase_file)} if phase_file else {})}
    command = [sys.executable, "-m", "builder", "build", str(project), "--base", f"rootfs:{base}", "--json",
               *([] if VALIDATE else ["--no-validate"])]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        try:
            message = json.loads(done.stdout)["error"]
        except (ValueError, KeyError, TypeError):
            message = done.stderr.strip()[-4000:]
        raise AirbuildFailed(f"airbuild build failed (exit {done.returncode}) after {wall:.1f}s: {message}")
    return wall, json.loads(done.stdout)


def rule_layers(result: dict) -> list[dict]:
    """The python-requirements layers (one per non-empty bucket: `python-requirements/NN`)."""
    return [l for l in result["layers"] if l["rule"] == RULE or l["rule"].startswith(RULE + "/")]


def python_layer(result: dict) -> dict:
    layers = rule_layers(result)
    if not layers:
        return {"present": False}
    return {"layers": len(layers), "cached": all(l["cached"] for l in layers),
            "rebuilt": sum(not l["cached"] for l in layers), "reason": "; ".join(dict.fromkeys(l["reason"] for l in layers)),
            "digest": [l["digest"] for l in layers], "size": sum(l["size"] for l in layers),
            "rebuilt_size": sum(l["size"] for l in layers if not l["cached"])}


def layer_contents(result: dict) -> dict:
    """Uncompressed size and entry count of the python-requirements layers, read from the OCI layout."""
    size = entries = 0
    for layer in rule_layers(result):
        blob = Path(result["oci_layout"]) / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
        with tarfile.open(blob, mode="r|*") as archive:
            for member in archive:
                entries += 1
                size += member.size
    return {"uncompressed_file_bytes": size, "entries": entries}


def lock_wheels(project: Path) -> list[dict]:
    lock = json.loads((project / "astro.lock").read_text())
    return lock.get("python", {}).get("entries", [])


def run(name: str, project: Path, store: Path, uv_cache: Path, base: Path, phase_file: Path | None = None) -> dict:
    wall, result = airbuild(project, store, uv_cache, base, phase_file)
    layer = python_layer(result)
    log(f"airbuild: {name}: {wall:.1f}s, python layers {layer.get('rebuilt')} of {layer.get('layers')} built")
    return {"wall_s": round(wall, 3), "internal_s": round(result["duration_s"], 3), "python_layer": layer,
            "manifest_digest": result["manifest_digest"], "_result": result}


def store_with_base(work: Path, name: str, base: Path) -> tuple[Path, float]:
    """A store holding only the imported base (a throwaway build of a project with no
    requirements), and the seconds that took."""
    project, store = work / f"tiny-{name}", work / f"store-{name}"
    tiny_project(project)
    wall, _ = airbuild(project, store, work / f"uv-{name}", base)
    shutil.rmtree(project)
    return store, wall


def bench_airbuild(template: Path, work: Path, base: Path, repeat: int) -> dict:
    log("airbuild: cold (empty store, empty uv cache, no astro.lock)")
    project = work / "airbuild-cold"
    shutil.copytree(template, project)
    cold = run("cold", project, work / "store-cold", work / "uv-cold", base)
    shutil.rmtree(work / "store-cold")
    shutil.rmtree(project)

    log("airbuild: importing the base into a fresh store (throwaway build, no requirements)")
    store, base_import_s = store_with_base(work, "resolve", base)
    project = work / "airbuild-resolve"
    shutil.copytree(template, project)
    log("airbuild: cold_base_in_store (store holds only the base, empty uv cache, no astro.lock)")
    cold_resolve = run("cold_base_in_store", project, store, work / "uv-resolve", base)
    wheels = lock_wheels(project)
    contents = layer_contents(cold_resolve["_result"])
    shutil.rmtree(store)

    log("airbuild: importing the base into another fresh store")
    store, _ = store_with_base(work, "locked", base)
    uv_cache = work / "uv-locked"
    shutil.rmtree(project / ".airbuild")
    log("airbuild: cold_locked (store holds only the base, astro.lock kept, no .airbuild/)")
    cold_locked = run("cold_locked", project, store, uv_cache, base)

    warm, warm_internal, warm_cached = [], [], True
    for n in range(repeat):
        log(f"airbuild: warm {n + 1}/{repeat} (one DAG edited, same store and lock)")
        edit_dag(project, n)
        numbers = run("warm", project, store, uv_cache, base)
        warm.append(numbers["wall_s"])
        warm_internal.append(numbers["internal_s"])
        warm_cached = warm_cached and numbers["python_layer"].get("cached") is True

    log("airbuild: reinstall (no .airbuild/, same store and lock)")
    shutil.rmtree(project / ".airbuild")
    reinstall = run("reinstall", project, store, uv_cache, base)

    log(f"airbuild: add_package ({ADDED} appended to requirements.txt; the other wheels in the store)")
    add_package(project)
    phase_file = work / "phases.json"
    added = run("add_package", project, store, uv_cache, base, phase_file)
    phases = json.loads(phase_file.read_text()) if phase_file.is_file() else {}

    return {
        "cold_s": cold["wall_s"],
        "cold_internal_s": cold["internal_s"],
        "base_import_s": round(base_import_s, 3),
        "cold_base_in_store_s": cold_resolve["wall_s"],
        "cold_base_in_store_internal_s": cold_resolve["internal_s"],
        "cold_locked_s": cold_locked["wall_s"],
        "cold_locked_internal_s": cold_locked["internal_s"],
        "warm_s": spread(warm),
        "warm_internal_s": spread(warm_internal),
        "warm_python_layer_cached": warm_cached,
        "reinstall_s": reinstall["wall_s"],
        "reinstall_internal_s": reinstall["internal_s"],
        "reinstall_python_layer": {k: v for k, v in reinstall["python_layer"].items() if k in ("cached", "reason")},
        "add_package_s": added["wall_s"],
        "add_package_internal_s": added["internal_s"],
        "add_package_phases_s": phases,
        "add_package_python_layers": {k: added["python_layer"][k] for k in ("layers", "rebuilt", "size", "rebuilt_size")},
        "python_layer": {**{k: v for k, v in cold_resolve["python_layer"].items() if k != "digest"}, **contents},
        "same_python_layer_every_cold_build": len({tuple(numbers["python_layer"]["digest"])
                                                   for numbers in (cold, cold_resolve, cold_locked)}) == 1,
        "lock_wheels": len(wheels),
        "lock_wheel_bytes": sum(w.get("size", 0) for w in wheels),
    }


# -- BuildKit -------------------------------------------------------------------


class PipDocker(Docker):
    """build_bench's Docker with this benchmark's tag, keeping the build log (plain progress)."""

    log_text = ""

    def build(self, project: Path) -> float:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        wall, done = timed([self.client, "build", "--network", "host", "--progress", "plain",
                            "-f", str(self.dockerfile), "--iidfile", str(self.iid_file), "-t", IMAGE_TAG,
                            str(project)], env=env)
        self.images.add(self.iid_file.read_text().strip())
        self.log_text = done.stderr + done.stdout
        return wall

    def pip_layer(self) -> dict:
        """The pip layer's size (uncompressed, bytes) and how many distributions pip reported."""
        history = self.run("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}",
                           self.iid_file.read_text().strip()).stdout
        size = next((int(line.split("\t", 1)[0]) for line in history.splitlines() if "pip install" in line), None)
        installed = next((line.split("Successfully installed", 1)[1].split() for line in self.log_text.splitlines()
                          if "Successfully installed" in line), [])
        return {"size": size, "distributions": len(installed)}

    def pip_cached(self) -> bool:
        """Whether the last build's `RUN pip install` step came from the build cache."""
        lines = self.log_text.splitlines()
        step = next((line.split()[0] for line in lines if line.startswith("#") and "] RUN " in line
                     and "pip install" in line), None)
        return step is not None and f"{step} CACHED" in lines


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's Python trusts: SSL_CERT_FILE, else OpenSSL's default file."""
    path = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().cafile
    return Path(path) if path and os.path.isfile(path) else None


def bench_buildkit(docker: PipDocker, template: Path, work: Path, base: Path, repeat: int,
                   ca_bundle: Path | None) -> dict:
    project = work / "buildkit"
    shutil.copytree(template, project)
    if ca_bundle:
        shutil.copyfile(ca_bundle, project / CA_FILE)
    log(f"buildkit: importing {base.name} as {BASE_TAG} (not timed)")
    docker.run("import", str(base), BASE_TAG)
    docker.reset()
    log("buildkit: cold (docker builder prune -af; the base stays)")
    cold_s = docker.build(project)
    layer = docker.pip_layer()
    log(f"buildkit: cold: {cold_s:.1f}s, {layer['distributions']} distributions")

    warm, warm_cached = [], []
    for n in range(repeat):
        log(f"buildkit: warm {n + 1}/{repeat} (one DAG edited)")
        edit_dag(project, n)
        warm.append(docker.build(project))
        warm_cached.append(docker.pip_cached())

    log(f"buildkit: add_package ({ADDED} appended: pip reinstalls everything)")
    add_package(project)
    add_s = docker.build(project)

    return {
        "add_package_s": round(add_s, 3),
        "docker_client": docker.client,
        "docker_server_version": docker.run("version", "--format", "{{.Server.Version}}").stdout.strip(),
        "docker_storage_driver": docker.run("info", "--format", "{{.Driver}}").stdout.strip(),
        "pip_version": docker.run("run", "--rm", "--network", "none", BASE_TAG, "python3", "-m", "pip",
                                  "--version").stdout.split()[1],
        "cold_s": round(cold_s, 3),
        "warm_s": spread(warm),
        "warm_runs_s": [round(w, 3) for w in warm],
        "warm_pip_step_cached": warm_cached,
        "pip_layer": layer,
    }


def bench_uv(client: str, template: Path, work: Path, ca_bundle: Path | None) -> dict:
    """uv in the Dockerfile (cache mount): cold, then one package added (BASE_TAG already imported)."""
    (work / "Dockerfile.uv").write_text(uv_dockerfile(ca_bundle is not None))
    docker = PipDocker(client, work / "Dockerfile.uv", work / "uv.iid")
    project = work / "buildkit-uv"
    shutil.copytree(template, project)
    if ca_bundle:
        shutil.copyfile(ca_bundle, project / CA_FILE)
    try:
        log("buildkit+uv: cold (its cache mount empty)")
        cold_s = docker.build(project)
        log(f"buildkit+uv: add_package ({ADDED} appended; uv's cache mount holds the other wheels)")
        add_package(project)
        add_s = docker.build(project)
    finally:
        docker.reset()
    return {"uv_version": UV, "cold_s": round(cold_s, 3), "add_package_s": round(add_s, 3)}


def run_buildkit(template: Path, work: Path, repeat: int, no_compile: bool) -> tuple[dict | None, str | None]:
    client, missing = usable_buildkit_client()
    if client is None:
        return None, missing
    base = debian_rootfs("python3-pip")
    ca_bundle = host_ca_bundle()
    (work / "Dockerfile.buildkit").write_text(buildkit_dockerfile(no_compile, ca_bundle is not None))
    docker = PipDocker(client, work / "Dockerfile.buildkit", work / "buildkit.iid")
    try:
        numbers = bench_buildkit(docker, template, work, base, repeat, ca_bundle)
        numbers["uv"] = bench_uv(client, template, work, ca_bundle)
        return numbers, None
    except RuntimeError as exc:
        return None, str(exc)
    finally:
        log("buildkit: removing the images and build cache this run made")
        docker.reset()
        subprocess.run([client, "rmi", "-f", BASE_TAG], capture_output=True)


# -- report ---------------------------------------------------------------------


def ratios(airbuild_numbers: dict | None, buildkit_numbers: dict | None) -> dict | None:
    if not airbuild_numbers or not buildkit_numbers:
        return None
    return {
        "cold": round(buildkit_numbers["cold_s"] / airbuild_numbers["cold_s"], 2),
        "cold_base_in_store": round(buildkit_numbers["cold_s"] / airbuild_numbers["cold_base_in_store_s"], 2),
        "warm": round(buildkit_numbers["warm_s"]["median"] / airbuild_numbers["warm_s"]["median"], 2),
        "add_package_vs_pip": round(buildkit_numbers["add_package_s"] / airbuild_numbers["add_package_s"], 2),
        **({"add_package_vs_uv": round(buildkit_numbers["uv"]["add_package_s"] / airbuild_numbers["add_package_s"], 2)}
           if buildkit_numbers.get("uv") else {}),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="airbuild's requirements layer vs pip under BuildKit")
    parser.add_argument("--quick", action="store_true", help=f"small requirement set ({' '.join(QUICK)})")
    parser.add_argument("--requirements", type=Path, help="use this requirements.txt instead")
    parser.add_argument("--repeat", type=int, default=3, help="warm builds of each tool (default 3)")
    parser.add_argument("--validate", action="store_true",
                        help="let airbuild validate the DAGs (imports Airflow in its sandbox; default --no-validate)")
    parser.add_argument("--pip-no-compile", action="store_true",
                        help="pip install --no-compile (no .pyc, like airbuild; default: pip's own default)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.quick and args.requirements:
        parser.error("--quick and --requirements are exclusive")
    return args


def main() -> int:
    global VALIDATE
    args = parse_args()
    VALIDATE = args.validate
    if args.requirements:
        requirements = [line.strip() for line in args.requirements.read_text().splitlines() if line.strip()]
    else:
        requirements = QUICK if args.quick else FULL
    base = debian_rootfs()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="airbuild-pybench-") as tmp:
        work = Path(tmp)
        write_project(work / "template", requirements)
        try:
            airbuild_numbers, airbuild_error = bench_airbuild(work / "template", work, base, args.repeat), None
        except AirbuildFailed as exc:
            airbuild_numbers, airbuild_error = None, str(exc)
            log(airbuild_error)
        buildkit_numbers, skipped = run_buildkit(work / "template", work, args.repeat, args.pip_no_compile)

    report = {
        "requirements": requirements,
        "airbuild": airbuild_numbers,
        **({"airbuild_error": airbuild_error} if airbuild_error else {}),
        "buildkit": buildkit_numbers,
        **({"buildkit_skipped": skipped} if skipped else {}),
        "airbuild_validates_dags": args.validate,
        "pip_no_compile": args.pip_no_compile,
        "ratios": ratios(airbuild_numbers, buildkit_numbers),
        "machine": machine(load_before[0]),
    }
    emit(report, args.out)
    return 0 if airbuild_error is None else 1


if __name__ == "__main__":
    sys.exit(main())
