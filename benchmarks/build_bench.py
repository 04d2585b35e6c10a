"""Benchmark airbuild against BuildKit (`docker build`) on generated Airflow projects.

    python3 benchmarks/build_bench.py [--dags 1000] [--large-dags 10000] [--include-mb 50] [--repeat 5] [--out FILE]

Two projects, each measured with both tools in the same run: --dags DAG files (the main figures) and
--large-dags (0: skip), each with --include-mb of data. airbuild's no-op and one-DAG-edit builds are timed
as a user runs them, a fresh `python -m builder` each (the build server, builder/cli/server.py, started by
the first one), and also in the client's own process (AIRBUILD_SERVER=0). Prints one JSON object on stdout
(progress goes to stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import random
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
import report as report_json

REPO = Path(__file__).resolve().parent.parent
WORKDIR = "/usr/local/airflow"
OWNER = "50000:0"  # the base's `astro` user, group root: what Astro's ONBUILD COPY gives
BASE_TAG = "airbuild-bench-base:latest"
IMAGE_TAG = "airbuild-bench:latest"
TEAMS = 20
INCLUDE_FILES = 50
SEED = 20240501
EDITED_DAG = "dags/team_00/dag_0000.py"

TOP_LEVEL = {
    "Dockerfile": f"FROM {BASE_TAG}\nENV AIRFLOW__CORE__LOAD_EXAMPLES=False\n"
                  "LABEL org.opencontainers.image.title=airbuild-bench\nUSER astro\n",
    "astro.yaml": "name: airbuild-bench\nowner:\n  user: astro\n  group: 0\n",
    "requirements.txt": "# No extra Python distributions: the benchmark measures the file layers.\n",
    "packages.txt": "# No extra Debian packages: the benchmark measures the file layers.\n",
    ".dockerignore": ".git\n.env\n.airbuild\nastro.lock\nairflow_settings.yaml\nlogs/\n**/__pycache__\n",
}

# BuildKit's equivalent of airbuild's default layers for this project. A multi-source
# COPY of directories would flatten their contents, so each directory gets its own COPY.
BUILDKIT_DOCKERFILE = f"""\
FROM {BASE_TAG}
ENV AIRFLOW__CORE__LOAD_EXAMPLES=False
LABEL org.opencontainers.image.title=airbuild-bench
COPY --chown={OWNER} {' '.join(sorted(TOP_LEVEL))} {WORKDIR}/
COPY --chown={OWNER} include {WORKDIR}/include
COPY --chown={OWNER} plugins {WORKDIR}/plugins
COPY --chown={OWNER} dags {WORKDIR}/dags
USER astro
"""

DAG_TEMPLATE = '''\
"""{title}

{about}
"""

from __future__ import annotations

import pendulum
from airflow.decorators import dag, task


@dag(
    dag_id="{dag_id}",
    schedule="{schedule}",
    start_date=pendulum.datetime(2024, {month}, {day}, tz="UTC"),
    catchup=False,
    tags=["{team}", "generated"],
    default_args={{"owner": "{team}", "retries": {retries}}},
)
def {dag_id}():
    @task
    def extract() -> list[int]:
        return list(range({rows}))

    @task
    def transform(rows: list[int]) -> int:
        return sum(row * {factor} for row in rows)

    @task
    def load(total: int) -> None:
        print("{dag_id} loaded", total)

    load(transform(extract()))


{dag_id}()
'''

PLUGIN = '''\
"""A small hook shared by the generated DAGs."""

from airflow.hooks.base import BaseHook


class BenchHook(BaseHook):
    def __init__(self, conn_id: str = "bench_default") -> None:
        super().__init__()
        self.conn_id = conn_id
'''


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the project ----------------------------------------------------------------


def vocabulary(rng: random.Random) -> list[str]:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(600)]
    return words + ["\n"] * 40


def write_dags(project: Path, count: int, rng: random.Random, words: list[str]) -> None:
    prose = [w for w in words if w != "\n"]
    for n in range(count):
        team = f"team_{n % TEAMS:02d}"
        about = textwrap.fill(" ".join(rng.choices(prose, k=rng.randint(40, 160))), width=88)
        text = DAG_TEMPLATE.format(
            title=f"Pipeline {n} of {team}.", about=about, dag_id=f"dag_{n:04d}", team=team,
            schedule=rng.choice(["@hourly", "@daily", "@weekly", "0 3 * * *", "*/15 * * * *"]),
            month=rng.randint(1, 12), day=rng.randint(1, 28), retries=rng.randint(0, 3),
            rows=rng.randint(10, 10_000), factor=rng.randint(2, 97),
        )
        path = project / "dags" / team / f"dag_{n:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def write_include(project: Path, total_mb: float, rng: random.Random, words: list[str]) -> None:
    """Alternate random bytes (incompressible) and word-salad text, INCLUDE_FILES files in all."""
    size = int(total_mb * 1024 * 1024) // INCLUDE_FILES
    directory = project / "include"
    directory.mkdir()
    for n in range(INCLUDE_FILES):
        if n % 2:
            text = " ".join(rng.choices(words, k=size // 5 + 1)).encode()
            (directory / f"table_{n:02d}.csv").write_bytes(text[:size])
        else:
            (directory / f"blob_{n:02d}.bin").write_bytes(rng.randbytes(size))


def write_plugins(project: Path) -> None:
    (project / "plugins").mkdir()
    (project / "plugins" / "__init__.py").write_text("")
    (project / "plugins" / "bench_hook.py").write_text(PLUGIN)


def generate_project(project: Path, dags: int, include_mb: float) -> int:
    """Write a deterministic Astro-layout project; return how many files it holds."""
    rng = random.Random(SEED)
    words = vocabulary(rng)
    project.mkdir(parents=True)
    for name, text in TOP_LEVEL.items():
        (project / name).write_text(text)
    write_dags(project, dags, rng, words)
    write_include(project, include_mb, rng, words)
    write_plugins(project)
    return sum(len(files) for _, _, files in os.walk(project))


def edit_dag(project: Path, counter: int) -> None:
    with open(project / EDITED_DAG, "a") as handle:
        handle.write(f"# benchmark edit {counter}\n")


# -- measuring ------------------------------------------------------------------


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4)}


# -- airbuild -------------------------------------------------------------------


def airbuild(project: Path, store: Path, base: Path, runtime: Path | None = None,
             served: bool = True, journal: bool = True) -> tuple[float, dict]:
    """One `airbuild build --json`: wall-clock seconds and the reported result. `runtime`: where its build
    server lives (XDG_RUNTIME_DIR); `served`: False runs it in its own process (AIRBUILD_SERVER=0);
    `journal`: False, a server started without its change journal (AIRBUILD_JOURNAL=0: every command walks)."""
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(store), "AIRBUILD_SERVER": "1" if served else "0",
           "AIRBUILD_JOURNAL": "1" if journal else "0", **({"XDG_RUNTIME_DIR": str(runtime)} if runtime else {})}
    command = [sys.executable, "-m", "builder", "build", str(project), "--base", f"rootfs:{base}", "--json"]
    wall, done = timed(command, cwd=REPO, env=env)
    return wall, json.loads(done.stdout)


def only_dags_rebuilt(result: dict, previous_digest: str) -> bool:
    rebuilt = [layer["rule"] for layer in result["layers"] if not layer["cached"]]
    return len(rebuilt) == 1 and rebuilt[0].split(":")[0] == "dags" and result["manifest_digest"] != previous_digest


def tiny_project(path: Path) -> None:
    path.mkdir()
    for name, text in TOP_LEVEL.items():
        (path / name).write_text(text)
    (path / "dags").mkdir()
    (path / "dags" / "hello.py").write_text("HELLO = 1\n")


def server_log(runtime: Path) -> str:
    log = runtime / "airbuild" / "server.log"
    return log.read_text() if log.exists() else ""


def stop_servers(runtime: Path) -> None:
    """The build servers this run started (its own runtime directory), stopped by their pids."""
    for line in server_log(runtime).splitlines():
        if " airbuild server " in line:
            try:
                os.kill(int(line.split(" airbuild server ")[1].split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def wait_for_server(runtime: Path) -> None:
    deadline = time.monotonic() + 60
    while not list((runtime / "airbuild").glob("server-*.sock")) and time.monotonic() < deadline:
        time.sleep(0.1)


def repeated(project: Path, store: Path, base: Path, runtime: Path, repeat: int, served: bool, edit: bool,
             counter: list[int], journal: bool = True) -> tuple[list[float], list[float], bool]:
    """`repeat` builds (each after a one-DAG edit, or of an unchanged project): walls, in-process durations, and
    whether each edit rebuilt exactly one DAG layer."""
    walls, internal, only_dags = [], [], True
    _, result = airbuild(project, store, base, runtime, served, journal)  # settled: the stamp written
    if served:  # the server watches the project from the report of the command above: wait for its walk
        time.sleep(1.0)
        _, result = airbuild(project, store, base, runtime, served, journal)
    for n in range(repeat):
        previous = result["manifest_digest"]
        if edit:
            counter[0] += 1
            edit_dag(project, counter[0])
        wall, result = airbuild(project, store, base, runtime, served, journal)
        walls.append(wall)
        internal.append(result["duration_s"])
        if edit:
            only_dags = only_dags and only_dags_rebuilt(result, previous)
    return walls, internal, only_dags


def bench_airbuild(template: Path, work: Path, base: Path, repeat: int) -> dict:
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    try:
        return _bench_airbuild(template, work, base, repeat, runtime)
    finally:
        stop_servers(runtime)


def _bench_airbuild(template: Path, work: Path, base: Path, repeat: int, runtime: Path) -> dict:
    cold_project, cold_store = work / "cold", work / "store-cold"
    shutil.copytree(template, cold_project, symlinks=True)
    log("airbuild: cold build (empty store)")
    cold_s, _ = airbuild(cold_project, cold_store, base, runtime)

    project, store = work / "airbuild", work / "store"
    log("airbuild: importing the base into a second store (throwaway tiny build)")
    tiny_project(work / "tiny")
    airbuild(work / "tiny", store, base, runtime)
    shutil.copytree(template, project, symlinks=True)
    log("airbuild: cold build of the project (base already in the store)")
    cold_project_s, result = airbuild(project, store, base, runtime)
    wait_for_server(runtime)

    figures, counter, only_dags = {}, [0], True
    walking = work / "runtime-walking"  # a second server, without the change journal
    walking.mkdir(mode=0o700)
    try:
        for served, journal, suffix, where in ((True, True, "", runtime), (True, False, "_served_walking", walking),
                                               (False, True, "_in_process", runtime)):
            for edit, name in ((False, "noop"), (True, "dag_edit")):
                how = {"_served_walking": " served without the change journal",
                       "_in_process": " without the build server"}.get(suffix, "")
                log(f"airbuild: {repeat} {name} builds{how}")
                walls, internal, only = repeated(project, store, base, where, repeat, served, edit, counter, journal)
                figures[f"{name}{suffix}_s"] = spread(walls)
                figures[f"{name}{suffix}_internal_s"] = spread(internal)
                only_dags = only_dags and only
    finally:
        stop_servers(walking)
    served_commands = server_log(runtime).count("command in process")
    watched = "watching " in server_log(runtime)
    return {
        "cold_s": round(cold_s, 4),
        "cold_project_s": round(cold_project_s, 4),
        **figures,
        "only_one_dag_layer_rebuilt": only_dags,
        "dag_layers": sum(1 for layer in result["layers"] if layer["rule"].split(":")[0] == "dags"),
        "commands_served": served_commands,
        "journal_watched_the_project": watched,
        "journal_forgot": [line for line in server_log(runtime).splitlines() if " forgetting " in line],
    }


# -- BuildKit -------------------------------------------------------------------


def buildkit_client() -> str | None:
    """The first `docker` on PATH that can drive BuildKit: one with buildx, or a CLI older
    than 23 (BuildKit built in; newer ones need the buildx plugin for DOCKER_BUILDKIT=1)."""
    seen = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.realpath(os.path.join(directory, "docker"))
        if path in seen or not os.access(path, os.X_OK):
            continue
        seen.add(path)
        if subprocess.run([path, "buildx", "version"], capture_output=True).returncode == 0:
            return path
        version = subprocess.run([path, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return path
    return None


class Docker:
    def __init__(self, client: str, dockerfile: Path, iid_file: Path):
        self.client, self.dockerfile, self.iid_file = client, dockerfile, iid_file
        self.images: set[str] = set()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return timed([self.client, *args])[1]

    def build(self, project: Path) -> float:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        wall, _ = timed([self.client, "build", "--network", "host", "-f", str(self.dockerfile),
                         "--iidfile", str(self.iid_file), "-t", IMAGE_TAG, str(project)], env=env)
        self.images.add(self.iid_file.read_text().strip())
        return wall

    def reset(self) -> None:
        """No build cache and no built image; the base image stays."""
        subprocess.run([self.client, "rmi", "-f", IMAGE_TAG, *self.images], capture_output=True)
        self.run("builder", "prune", "-af")

    def clean_up(self) -> None:
        self.reset()
        subprocess.run([self.client, "rmi", "-f", BASE_TAG], capture_output=True)


def bench_buildkit(docker: Docker, template: Path, work: Path, base: Path, repeat: int) -> dict:
    project = work / "buildkit"
    shutil.copytree(template, project, symlinks=True)
    log(f"buildkit: importing the base as {BASE_TAG} (not timed)")
    docker.run("import", str(base), BASE_TAG)
    return docker_numbers(docker, project, repeat)


def docker_numbers(docker: Docker, project: Path, repeat: int) -> dict:
    """Cold (no build cache), no-op and one-DAG-edit `docker build`s of `project`, the base imported."""
    docker.reset()
    log("buildkit: cold build (no build cache)")
    cold_s = docker.build(project)

    noop = []
    for n in range(repeat):
        log(f"buildkit: no-op rebuild {n + 1}/{repeat}")
        noop.append(docker.build(project))

    edit = []
    for n in range(repeat):
        log(f"buildkit: one-DAG edit {n + 1}/{repeat}")
        edit_dag(project, n)
        edit.append(docker.build(project))

    return {
        "docker_client": docker.client,
        "docker_server_version": docker.run("version", "--format", "{{.Server.Version}}").stdout.strip(),
        "docker_storage_driver": docker.run("info", "--format", "{{.Driver}}").stdout.strip(),
        "cold_s": round(cold_s, 4),
        "noop_s": spread(noop),
        "dag_edit_s": spread(edit),
    }


def usable_buildkit_client() -> tuple[str | None, str | None]:
    """(a docker CLI that can run BuildKit builds against a reachable daemon, None) or (None, why not)."""
    client = buildkit_client()
    if client is None:
        return None, "no docker CLI on PATH can run BuildKit builds (no buildx plugin, CLI >= 23)"
    info = subprocess.run([client, "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return None, f"`docker info` failed: {info.stderr.strip()[-500:]}"
    return client, None


def run_buildkit(template: Path, work: Path, base: Path, repeat: int) -> tuple[dict | None, str | None]:
    """BuildKit's numbers, or None and why they are missing."""
    client, missing = usable_buildkit_client()
    if client is None:
        return None, missing
    (work / "Dockerfile.buildkit").write_text(BUILDKIT_DOCKERFILE)
    docker = Docker(client, work / "Dockerfile.buildkit", work / "buildkit.iid")
    try:
        return bench_buildkit(docker, template, work, base, repeat), None
    except RuntimeError as exc:
        return None, str(exc)
    finally:
        log("buildkit: removing the images and build cache this run made")
        docker.clean_up()


# -- report ---------------------------------------------------------------------


def ratios(airbuild_numbers: dict, buildkit_numbers: dict | None) -> dict | None:
    if buildkit_numbers is None:
        return None
    return {
        "cold": round(buildkit_numbers["cold_s"] / airbuild_numbers["cold_s"], 2),
        "noop": round(buildkit_numbers["noop_s"]["median"] / airbuild_numbers["noop_s"]["median"], 2),
        "dag_edit": round(buildkit_numbers["dag_edit_s"]["median"] / airbuild_numbers["dag_edit_s"]["median"], 2),
    }


def debian_rootfs(*packages: str) -> Path:
    log(f"base: scripts/debian-rootfs {' '.join(packages)}".rstrip() + " (cached after the first run)")
    done = subprocess.run([str(REPO / "scripts" / "debian-rootfs"), *packages], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="airbuild vs BuildKit on a generated Airflow project")
    parser.add_argument("--dags", type=int, default=1000, help="number of DAG files (default 1000)")
    parser.add_argument("--large-dags", type=int, default=10000,
                        help="DAG files of the second, large project (default 10000; 0: skip it)")
    parser.add_argument("--include-mb", type=float, default=50.0, help="MiB of data under include/ (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="no-op and DAG-edit builds of each tool (default 5)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.dags < 1 or args.repeat < 1 or args.include_mb < 0 or args.large_dags < 0:
        parser.error("--dags and --repeat must be at least 1, --include-mb and --large-dags at least 0")
    return args


def measure(work: Path, base: Path, dags: int, include_mb: float, repeat: int) -> dict:
    """Both tools on one generated project, in the same run."""
    log(f"generating {dags} DAGs and {include_mb} MiB of include/ data in {work}")
    files = generate_project(work / "template", dags, include_mb)
    airbuild_numbers = bench_airbuild(work / "template", work, base, repeat)
    buildkit_numbers, skipped = run_buildkit(work / "template", work, base, repeat)
    return {
        "project": {"dags": dags, "include_mb": include_mb, "files": files},
        "airbuild": airbuild_numbers,
        "buildkit": buildkit_numbers,
        **({"buildkit_skipped": skipped} if skipped else {}),
        "ratios": ratios(airbuild_numbers, buildkit_numbers),
    }


def main() -> int:
    args = parse_args()
    base = debian_rootfs()
    # Bytecode for airbuild's own modules, as `pip install` writes it: without it every timed command
    # compiles them again (PYTHONDONTWRITEBYTECODE is set on some machines).
    compileall.compile_dir(REPO / "builder", quiet=1)
    started_python = python_start_s()
    with tempfile.TemporaryDirectory(prefix="airbuild-bench-") as tmp:
        (Path(tmp) / "main").mkdir()
        report = measure(Path(tmp) / "main", base, args.dags, args.include_mb, args.repeat)
    numbers = report["airbuild"]
    report["targets"] = {"noop_under_100ms": numbers["noop_s"]["median"] < 0.100,
                         "dag_edit_under_200ms": numbers["dag_edit_s"]["median"] < 0.200}
    if args.large_dags:
        with tempfile.TemporaryDirectory(prefix="airbuild-bench-large-") as tmp:
            (Path(tmp) / "large").mkdir()
            large = measure(Path(tmp) / "large", base, args.large_dags, args.include_mb, args.repeat)
        large["targets"] = {"noop_under_120ms": large["airbuild"]["noop_s"]["median"] < 0.120,
                            "dag_edit_under_250ms": large["airbuild"]["dag_edit_s"]["median"] < 0.250}
        report["large"] = large
    report["python_start_before_s"] = started_python
    emit(report, args.out)
    return 0


def python_start_s(repeat: int = 5) -> dict[str, float]:
    """`python -c pass`: the interpreter's own start on this machine now, the floor under every CLI figure."""
    return spread([timed([sys.executable, "-c", "pass"])[0] for _ in range(repeat)])


def emit(report: dict, out: Path | None) -> None:
    """Print the report (with the machine's description) as JSON, and write it to `out` too."""
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "python_start_s": python_start_s(), "load_average": os.getloadavg()}
    report_json.emit(report, out)


if __name__ == "__main__":
    sys.exit(main())
