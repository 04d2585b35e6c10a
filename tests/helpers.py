"""Helpers for tests: `from tests.helpers import run_cli, tool`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


class CommandFailed(subprocess.CalledProcessError):
    """A CalledProcessError whose message shows the output, so a failing test explains itself."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def run(
    cmd: Sequence[str | os.PathLike],
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run cmd with text output captured; env is added to the current environment; `input` goes to stdin."""
    argv = [os.fspath(c) for c in cmd]
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
    )
    if check and proc.returncode != 0:
        raise CommandFailed(proc.returncode, shlex.join(argv), proc.stdout, proc.stderr)
    return proc


def run_cli(
    args: Sequence[str | os.PathLike],
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python3 -m builder ARGS` with the interpreter running the tests, on this checkout's code."""
    return run([sys.executable, "-m", "builder", *args], cwd=cwd, env={"PYTHONPATH": str(REPO), **(env or {})},
               check=check, input=input)


def docker(*args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], check=check)


def tool(name: str) -> str:
    """Path of a binary the suite needs (skopeo, umoci, bwrap...); fails the test if missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the suite with scripts/test, which installs it", pytrace=False)
    return path


def debian_rootfs(*packages: str) -> Path:
    """Cached Debian bookworm rootfs tarball (python3, ca-certificates, user astro, plus packages)."""
    proc = run([REPO / "scripts" / "debian-rootfs", *packages], check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/debian-rootfs failed ({proc.returncode}):\n{proc.stderr[-5000:]}", pytrace=False)
    return Path(proc.stdout.strip())


def descendants(pattern: str) -> list[str]:
    """`PID CMDLINE` of this process's descendants whose command line holds `pattern` (what `pgrep -af` prints,
    limited to this test process's tree: another worker's processes are not this test's leftovers)."""
    parents, commands = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(entry.name)] = command
    me, found = os.getpid(), []
    for pid, command in commands.items():
        ancestor, hops = parents.get(pid), 0
        while ancestor not in (None, 0, 1, me) and hops < 64:
            ancestor, hops = parents.get(ancestor), hops + 1
        if ancestor == me and pattern in command:
            found.append(f"{pid} {command}")
    return found


def rule_layers(result: dict, rule: str) -> list[dict]:
    """The rows of `result["layers"]` a rule made: a rule's steps are named `rule` or `rule/part` (the Python
    requirements' buckets)."""
    return [l for l in result["layers"] if l["rule"] == rule or l["rule"].startswith(rule + "/")]
