"""Run a command over an unpacked image filesystem, isolated with bubblewrap (else refuse).

bwrap: read-only root, a private /tmp, the project's directories read-only, no network,
new PID/IPC/UTS namespaces, an unprivileged uid, killed with its parent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, InputError

SANDBOX_UID = 50000


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


def command(job: SandboxRun) -> list[str]:
    """The bwrap command line for `job`."""
    if shutil.which("bwrap") is None:
        raise InputError("no sandbox to import DAGs in: install bubblewrap (`apt-get install bubblewrap`), "
                         "or build with --no-validate")
    argv = ["bwrap", "--ro-bind", str(job.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--unshare-all", "--uid", str(SANDBOX_UID), "--gid", "0",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", job.workdir]
    for mount in job.mounts:
        argv += ["--ro-bind", str(mount.host), mount.image]
    for key, value in sorted(job.env.items()):
        argv += ["--setenv", key, value]
    return argv + job.argv


def run(job: SandboxRun, capture: bool = True, stdout_to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `job`; with capture=False its output goes straight to ours (all of it to stderr if asked)."""
    argv = command(job)
    try:
        if capture:
            return subprocess.run(argv, capture_output=True, text=True, timeout=job.timeout_s,
                                  stdin=subprocess.DEVNULL)
        return subprocess.run(argv, text=True, timeout=job.timeout_s, stdin=subprocess.DEVNULL,
                              stdout=sys.stderr if stdout_to_stderr else None)
    except subprocess.TimeoutExpired:
        raise BuildError(f"the sandbox did not finish within {job.timeout_s:.0f} s") from None


class Session:
    """A sandboxed process kept running, answering one JSON line per request line (watch mode)."""

    def __init__(self, job: SandboxRun):
        self.process = subprocess.Popen(command(job), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)

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
