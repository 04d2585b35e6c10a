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


def run(job: SandboxRun, capture: bool = True, stdout_to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `job`; with capture=False its output goes straight to ours (all of it to stderr if asked)."""
    if shutil.which("bwrap") is None:
        raise InputError("no sandbox to import DAGs in: install bubblewrap (`apt-get install bubblewrap`), "
                         "or build with --no-validate")
    command = ["bwrap", "--ro-bind", str(job.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp", "--unshare-all", "--uid", str(SANDBOX_UID), "--gid", "0",
               "--die-with-parent", "--new-session", "--clearenv", "--chdir", job.workdir]
    for mount in job.mounts:
        command += ["--ro-bind", str(mount.host), mount.image]
    for key, value in sorted(job.env.items()):
        command += ["--setenv", key, value]
    command += job.argv
    try:
        if capture:
            return subprocess.run(command, capture_output=True, text=True, timeout=job.timeout_s,
                                  stdin=subprocess.DEVNULL)
        return subprocess.run(command, text=True, timeout=job.timeout_s, stdin=subprocess.DEVNULL,
                              stdout=sys.stderr if stdout_to_stderr else None)
    except subprocess.TimeoutExpired:
        raise BuildError(f"the sandbox did not finish within {job.timeout_s:.0f} s") from None
