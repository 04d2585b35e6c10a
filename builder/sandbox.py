"""Run a command over an unpacked image filesystem, isolated: bubblewrap, else Docker, else refuse.

bwrap: read-only root, a private /tmp, the project's directories read-only, no network,
new PID/IPC/UTS namespaces, an unprivileged uid, killed with its parent.
docker: the same filesystem imported once as an image (tagged by its content), run with
`--network none --read-only`, a tmpfs /tmp, no capabilities, memory and pids limits; the
container is removed however the run ends.
none (only when asked for): the image's own interpreter run through the image's dynamic
loader, on the host's filesystem; the harness still reports writes and connections.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, InputError

SANDBOX_UID = 50000
SANDBOXES = ("auto", "bwrap", "docker", "none")
CONFINED = ("bwrap", "docker")  # the ones with their own root, PID namespace and no network


@dataclass(frozen=True)
class Mount:
    host: Path
    image: str


@dataclass
class SandboxRun:
    rootfs: Path
    argv: list[str]
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    timeout_s: float = 3600
    sandbox: str = "bwrap"       # resolved by choose(): bwrap | docker | none
    memory_mb: int = 4096        # docker: the container's memory ceiling (the harness limits each file)
    processes: int = 512         # docker: the container's pids limit
    writable_root: bool = False  # bwrap: the rootfs bound read-write (airbuild's own jobs, never DAG code)


@dataclass
class Launch:
    """How to start a SandboxRun: the command line, its environment and directory, what to clean up."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    container: str | None = None  # docker: removed if the run does not end by itself

    def abandon(self) -> None:
        if self.container is not None:
            subprocess.run([_docker_client(), "rm", "-f", self.container], capture_output=True)


def choose(requested: str) -> str:
    """The sandbox to use for `requested` (auto: bwrap, else Docker); InputError when it is not available."""
    if requested not in SANDBOXES:
        raise InputError(f"unknown sandbox {requested!r}: choose one of {', '.join(SANDBOXES)}")
    if requested == "none":
        return "none"
    if requested in ("auto", "bwrap") and _bwrap_works():
        return "bwrap"
    if requested == "bwrap":
        raise InputError("bubblewrap cannot run here: install it (`apt-get install bubblewrap`) and allow "
                         "unprivileged user namespaces, or choose --sandbox docker")
    if _docker_client() is not None:
        return "docker"
    if requested == "docker":
        raise InputError("no Docker daemon answers (`docker version` fails): start one, or choose --sandbox bwrap")
    raise InputError("no sandbox to import DAGs in: install bubblewrap (`apt-get install bubblewrap`) or start "
                     "a Docker daemon. --no-sandbox imports them unconfined, on this machine, with your "
                     "rights; --no-validate skips validation")


@functools.cache
def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True)
    return probe.returncode == 0


@functools.cache
def _docker_client() -> str | None:
    """The first `docker` CLI that reaches a daemon (BuildKit not needed here, unlike builder.engine.detect)."""
    from python_on_whales.exceptions import DockerException

    from builder.engine import candidates, daemon_version

    for client in candidates():
        try:
            daemon_version(client)
        except (DockerException, OSError):
            continue
        return client
    return None


def command(job: SandboxRun) -> Launch:
    if job.sandbox == "bwrap":
        return _bwrap(job)
    if job.sandbox == "docker":
        return _docker(job)
    if job.sandbox == "none":
        return _unconfined(job)
    raise InputError(f"unknown sandbox {job.sandbox!r}")


def _bwrap(job: SandboxRun) -> Launch:
    argv = ["bwrap", "--bind" if job.writable_root else "--ro-bind", str(job.rootfs), "/",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-all", "--uid", str(SANDBOX_UID), "--gid", "0",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", job.workdir]
    for mount in job.mounts:
        argv += ["--ro-bind", str(mount.host), mount.image]
    for key, value in sorted(job.env.items()):
        argv += ["--setenv", key, value]
    return Launch(argv + job.argv)


_names = itertools.count()


def _docker(job: SandboxRun) -> Launch:
    client = _docker_client()
    if client is None:
        raise InputError("no Docker daemon answers (`docker version` fails) to run the sandbox")
    image = docker_image(client, job.rootfs)
    name = f"airbuild-sandbox-{os.getpid()}-{next(_names)}"
    # The invoking user's ids: the project's files are readable to them, and to nobody else for sure.
    argv = [client, "run", "--rm", "--interactive", "--name", name, "--network", "none", "--read-only",
            "--tmpfs", "/tmp:rw,exec,mode=1777", "--user", f"{os.getuid()}:{os.getgid()}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--pids-limit", str(job.processes),
            "--memory", f"{job.memory_mb}m", "--memory-swap", f"{job.memory_mb}m", "--workdir", job.workdir]
    for mount in job.mounts:
        argv += ["--volume", f"{mount.host}:{mount.image}:ro"]
    env = dict(os.environ)
    for key, value in sorted(job.env.items()):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):  # may be secrets: through the CLI's environment,
            env[key] = value                                   # never on a command line
            argv += ["--env", key]
        else:
            argv += ["--env", f"{key}={value}"]
    return Launch(argv + [image] + job.argv, env=env, container=name)


def docker_image(client: str, rootfs: Path) -> str:
    """The unpacked environment as a Docker image, imported once: its tag names the rootfs (content-addressed)."""
    import fcntl

    tag = f"airbuild-sandbox:{rootfs.name}"

    def present() -> bool:
        return subprocess.run([client, "image", "inspect", tag], capture_output=True).returncode == 0

    if present():
        return tag
    with open(rootfs.parent / f"{rootfs.name}.docker.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one import per environment, however many builds start at once
        if present():
            return tag
        print(f"airbuild: importing the environment into Docker for the sandbox (once): {tag}", file=sys.stderr)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imported = subprocess.run([client, "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise BuildError(f"docker import of the sandbox environment failed: {imported.stderr.strip()[-2000:]}")
    return tag


def _unconfined(job: SandboxRun) -> Launch:
    """The image's python3, run by the image's loader with the image's libraries; paths are the host's."""
    if not job.argv or job.argv[0] != "python3":
        raise InputError("without a sandbox only the image's python3 can be run")
    python = next((p for p in (_inside(job.rootfs, "/usr/local/bin/python3"), _inside(job.rootfs, "/usr/bin/python3"))
                   if p.is_file()), None)
    loader = next((p for p in (_inside(job.rootfs, "/lib64/ld-linux-x86-64.so.2"),
                               _inside(job.rootfs, "/lib/ld-linux-aarch64.so.1")) if p.is_file()), None)
    if python is None or loader is None:
        raise InputError("the image has no python3 (or no dynamic loader) to run without a sandbox")
    libraries = [str(d) for pattern in ("lib/*-linux-gnu", "usr/lib/*-linux-gnu")
                 for d in sorted(job.rootfs.glob(pattern))]
    libraries += [str(job.rootfs / d) for d in ("usr/local/lib", "lib", "usr/lib") if (job.rootfs / d).is_dir()]
    env = {**job.env, "PYTHONHOME": str(python.parent.parent)}
    return Launch([str(loader), "--library-path", ":".join(libraries), str(python), *job.argv[1:]],
                  env=env, cwd=job.workdir)


def _inside(rootfs: Path, path: str) -> Path:
    """`path` resolved as the image would, symlinks included, never leaving `rootfs`."""
    parts, resolved, hops = [p for p in path.split("/") if p], [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        if part == ".":
            continue
        candidate = rootfs.joinpath(*resolved, part)
        if candidate.is_symlink() and hops < 40:
            hops += 1
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return rootfs.joinpath(*resolved)


def run(job: SandboxRun, capture: bool = True, stdout_to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `job`; with capture=False its output goes straight to ours (all of it to stderr if asked)."""
    launch = command(job)
    output = {"capture_output": True} if capture else {"stdout": sys.stderr if stdout_to_stderr else None}
    finished = False
    try:
        proc = subprocess.run(launch.argv, text=True, timeout=job.timeout_s, stdin=subprocess.DEVNULL,
                              env=launch.env, cwd=launch.cwd, **output)
        finished = True
        return proc
    except subprocess.TimeoutExpired:
        raise BuildError(f"the sandbox did not finish within {job.timeout_s:.0f} s") from None
    finally:
        if not finished:  # timed out or interrupted: nothing may keep running
            launch.abandon()


class Session:
    """A sandboxed process kept running, answering one JSON line per request line (watch mode)."""

    def __init__(self, job: SandboxRun):
        self.launch = command(job)
        self.process = subprocess.Popen(self.launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1, env=self.launch.env,
                                        cwd=self.launch.cwd)

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, line: str) -> str:
        self.process.stdin.write(line.rstrip("\n") + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise BuildError(f"the sandbox session ended (exit {self.process.wait()})")
        return answer

    def close(self) -> None:
        if self.alive():
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self.launch.abandon()
