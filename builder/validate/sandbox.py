"""Run a command over an unpacked image filesystem, isolated: bubblewrap, else Docker, else refuse.

bwrap: read-only root, a private /tmp, the project's directories read-only, no network,
new PID/IPC/UTS namespaces, an unprivileged uid, killed with its parent.
docker: the same filesystem imported once as an image (tagged by its content), run with
`--network none --read-only`, a tmpfs /tmp, no capabilities, memory and pids limits; the
container is removed however the run ends.
none (only when asked for): the image's own interpreter run through the image's dynamic
loader, on the host's filesystem; the harness still reports writes and connections.

Nothing of the caller's environment is inherited: bwrap and the docker CLI are started with
the job's environment only (plus what the docker CLI needs to find its daemon), and bwrap's
command line, which the sandbox's /proc shows, is passed through a file descriptor. What a
run prints is read in bounded pieces, so its size never decides airbuild's memory.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from builder.common.errors import BuildError, InputError
from builder.layers.unpack import in_root

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
    # bwrap: the command is the namespace's init, so no bwrap process (holding our stdout) is visible
    # inside; the DAG harness, which reaps what its children leave, runs so.
    as_init: bool = False
    stdout_limit: int = 64 << 20  # captured runs: more than this on stdout stops the run
    network: bool = False        # the host's network (`airbuild run`); never for validation


@dataclass
class Launch:
    """How to start a SandboxRun: the command line, its environment and directory, what to clean up."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    container: str | None = None  # docker: removed if the run does not end by itself
    args_file: IO[bytes] | None = None  # bwrap: its arguments, read from this descriptor (--args)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.args_file.fileno(),) if self.args_file is not None else ()

    def started(self) -> None:
        """The process has read what it needed: close our end of the arguments file."""
        if self.args_file is not None:
            self.args_file.close()
            self.args_file = None

    def abandon(self) -> None:
        self.started()
        if self.container is not None:
            subprocess.run([_docker_client(), "rm", "-f", self.container], capture_output=True,
                           env=_docker_cli_env())


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
    # python-on-whales: loaded only when bwrap cannot run and the docker sandbox is looked for.
    from python_on_whales.exceptions import DockerException

    from builder.docker.engine import candidates, daemon_version

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
    options = ["--bind" if job.writable_root else "--ro-bind", str(job.rootfs), "/",
               "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-all", "--uid", str(SANDBOX_UID),
               "--gid", "0", "--die-with-parent", "--new-session", "--chdir", job.workdir]
    if job.as_init:
        options.append("--as-pid-1")
    if job.network:
        options.append("--share-net")
        resolver = job.rootfs / "etc" / "resolv.conf"
        # The host's resolver, as docker gives a container its own (never through an image's symlink).
        if (os.path.exists("/etc/resolv.conf") and resolver.parent.is_dir() and not resolver.parent.is_symlink()
                and not resolver.is_symlink()):
            if not resolver.exists():
                resolver.touch()  # the mount point, in airbuild's unpacked copy of the image
            options += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    for mount in job.mounts:
        options += ["--ro-bind", str(mount.host), mount.image]
    # The options name host paths: bwrap reads them from a descriptor, so its command line (which
    # /proc/1/cmdline shows inside when bwrap stays as init) is only `bwrap --args N`. The job's
    # environment is bwrap's own, passed on unchanged: nothing of ours is in its /proc/1/environ.
    args_file = tempfile.TemporaryFile()
    args_file.write(b"".join(os.fsencode(option) + b"\0" for option in options))
    args_file.seek(0)
    bwrap = shutil.which("bwrap") or "bwrap"
    return Launch([bwrap, "--args", str(args_file.fileno()), *job.argv], env=dict(job.env), args_file=args_file)


_names = itertools.count()


def _docker(job: SandboxRun) -> Launch:
    client = _docker_client()
    if client is None:
        raise InputError("no Docker daemon answers (`docker version` fails) to run the sandbox")
    image = docker_image(client, job.rootfs)
    name = f"airbuild-sandbox-{os.getpid()}-{next(_names)}"
    # The invoking user's ids: the project's files are readable to them, and to nobody else for sure.
    argv = [client, "run", "--rm", "--interactive", "--name", name, "--network", "host" if job.network else "none",
            "--read-only",
            "--tmpfs", "/tmp:rw,exec,mode=1777", "--user", f"{os.getuid()}:{os.getgid()}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--pids-limit", str(job.processes),
            "--memory", f"{job.memory_mb}m", "--memory-swap", f"{job.memory_mb}m", "--workdir", job.workdir]
    for mount in job.mounts:
        argv += ["--volume", f"{mount.host}:{mount.image}:ro"]
    env = _docker_cli_env()
    for key, value in sorted(job.env.items()):
        if key in env:  # the CLI's own (PATH, HOME): not secrets, and the CLI needs its values
            argv += ["--env", f"{key}={value}"]
        else:  # anything else may be a secret (connections, .env values): never on a command line
            env[key] = value
            argv += ["--env", key]
    return Launch(argv + [image] + job.argv, env=env, container=name)


# What the docker CLI needs to reach its daemon (and nothing else of ours: it is started for DAG code).
_DOCKER_CLI_VARIABLES = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY",
                         "DOCKER_CERT_PATH", "DOCKER_API_VERSION", "XDG_RUNTIME_DIR")


def _docker_cli_env() -> dict[str, str]:
    return {"LANG": "C.UTF-8", **{k: os.environ[k] for k in _DOCKER_CLI_VARIABLES if k in os.environ}}


def docker_image(client: str, rootfs: Path) -> str:
    """The unpacked environment as a Docker image, imported once: its tag names the rootfs (content-addressed)."""
    import fcntl  # noqa: PLC0415 - POSIX only, and only for the docker sandbox

    tag = f"airbuild-sandbox:{rootfs.name}"

    def present() -> bool:
        return subprocess.run([client, "image", "inspect", tag], capture_output=True,
                              env=_docker_cli_env()).returncode == 0

    if present():
        return tag
    with open(rootfs.parent / f"{rootfs.name}.docker.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one import per environment, however many builds start at once
        if present():
            return tag
        print(f"airbuild: importing the environment into Docker for the sandbox (once): {tag}", file=sys.stderr)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imported = subprocess.run([client, "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True,
                                  env=_docker_cli_env())
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise BuildError(f"docker import of the sandbox environment failed: {imported.stderr.strip()[-2000:]}")
    return tag


def _unconfined(job: SandboxRun) -> Launch:
    """The image's python3, run by the image's loader with the image's libraries; paths are the host's."""
    if not job.argv or job.argv[0] != "python3":
        raise InputError("without a sandbox only the image's python3 can be run")
    python = next((p for p in (in_root(job.rootfs, "/usr/local/bin/python3"), in_root(job.rootfs, "/usr/bin/python3"))
                   if p.is_file()), None)
    loader = next((p for p in (in_root(job.rootfs, "/lib64/ld-linux-x86-64.so.2"),
                               in_root(job.rootfs, "/lib/ld-linux-aarch64.so.1")) if p.is_file()), None)
    if python is None or loader is None:
        raise InputError("the image has no python3 (or no dynamic loader) to run without a sandbox")
    libraries = [str(d) for pattern in ("lib/*-linux-gnu", "usr/lib/*-linux-gnu")
                 for d in sorted(job.rootfs.glob(pattern))]
    libraries += [str(job.rootfs / d) for d in ("usr/local/lib", "lib", "usr/lib") if (job.rootfs / d).is_dir()]
    env = {**job.env, "PYTHONHOME": str(python.parent.parent)}
    return Launch([str(loader), "--library-path", ":".join(libraries), str(python), *job.argv[1:]],
                  env=env, cwd=job.workdir)


STDERR_KEPT = 64 << 10  # a captured run's stderr: its last 64 KiB (for error messages)


def run(job: SandboxRun, capture: bool = True, stdout_to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `job`. Captured: stdout up to the job's stdout_limit (more stops the run), the last 64 KiB of
    stderr. Not captured: its output is streamed to ours (all of it to stderr if asked), secrets masked."""
    return run_all([job], capture, stdout_to_stderr)[0]


def run_all(jobs: list[SandboxRun], capture: bool = True,
            stdout_to_stderr: bool = False) -> list[subprocess.CompletedProcess[str]]:
    """Run `jobs` at once (each in its own sandbox), as `run` runs one; their results in order. All are
    started from this thread (bwrap dies with the thread that started it) and, if one fails, times out or
    we are interrupted, none keeps running."""
    running: list[_Running] = []
    try:
        for job in jobs:
            running.append(_Running(job, capture, stdout_to_stderr))
        return [each.finish() for each in running]
    finally:
        for each in running:
            each.stop()


class _Running:
    """One started job: its process, the threads reading its output, what to clean up."""

    def __init__(self, job: SandboxRun, capture: bool, stdout_to_stderr: bool):
        self.job, self.capture, self.finished = job, capture, False
        self.launch = command(job)
        self.deadline = time.monotonic() + job.timeout_s if job.timeout_s else None
        try:
            self.proc = subprocess.Popen(self.launch.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                                         env=self.launch.env, cwd=self.launch.cwd, pass_fds=self.launch.pass_fds)
        except BaseException:
            self.launch.abandon()
            raise
        self.launch.started()
        if capture:
            self.out = _Collect(self.proc.stdout, job.stdout_limit, keep="head")
            self.err = _Collect(self.proc.stderr, STDERR_KEPT)
            self.readers: list[threading.Thread] = [self.out, self.err]
        else:
            self.readers = [_Forward(self.proc.stdout, sys.stderr if stdout_to_stderr else sys.stdout)]
        for reader in self.readers:
            reader.start()

    def finish(self) -> subprocess.CompletedProcess[str]:
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()) if self.deadline else None)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise BuildError(f"the sandbox did not finish within {self.job.timeout_s:.0f} s") from None
        for reader in self.readers:
            reader.join()
        self.finished = True
        if self.capture and self.out.overflowed:
            raise BuildError(f"the sandbox printed more than {self.job.stdout_limit >> 20} MiB: stopped")
        return subprocess.CompletedProcess(self.launch.argv, self.proc.returncode,
                                           self.out.text() if self.capture else None,
                                           self.err.text() if self.capture else None)

    def stop(self) -> None:
        """Timed out or interrupted: nothing may keep running."""
        if not self.finished:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self.launch.abandon()


class _Collect(threading.Thread):
    """Reads a pipe to its end, keeping at most `limit` bytes: the first (stdout) or the last (stderr)."""

    def __init__(self, pipe: IO[bytes], limit: int, keep: str = "tail"):
        super().__init__(daemon=True)
        self.pipe, self.limit, self.keep = pipe, limit, keep
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False

    def run(self) -> None:
        while chunk := self.pipe.read1(1 << 16):
            self.size += len(chunk)
            if self.keep == "head":
                if self.size > self.limit:
                    self.overflowed = True
                    continue  # drained, not kept: the writer must not block
                self.chunks.append(chunk)
            else:
                self.chunks.append(chunk)
                kept = sum(len(c) for c in self.chunks)
                while kept - len(self.chunks[0]) >= self.limit:
                    kept -= len(self.chunks.pop(0))
        self.pipe.close()

    def text(self) -> str:
        data = b"".join(self.chunks)
        if self.keep == "tail" and len(data) > self.limit:
            data = data[-self.limit:]
        return data.decode("utf-8", "replace")


class _Forward(threading.Thread):
    """Copies a pipe to one of our (masking) text streams as it arrives."""

    def __init__(self, pipe: IO[bytes], sink):
        super().__init__(daemon=True)
        self.pipe, self.sink = pipe, sink

    def run(self) -> None:
        while chunk := self.pipe.read1(1 << 16):
            self.sink.write(chunk.decode("utf-8", "replace"))
            self.sink.flush()
        self.pipe.close()


class Session:
    """A sandboxed process kept running, answering one JSON line per request line (watch mode)."""

    def __init__(self, job: SandboxRun):
        self.launch = command(job)
        self.process = subprocess.Popen(self.launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1, env=self.launch.env,
                                        cwd=self.launch.cwd, pass_fds=self.launch.pass_fds)
        self.launch.started()

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
