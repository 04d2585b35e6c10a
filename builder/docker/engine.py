"""The container engine for Dockerfile instructions that run a command: BuildKit, driven through python-on-whales.

`docker buildx build` where the CLI has buildx; else the classic `docker build` with
DOCKER_BUILDKIT=1 (Docker before 23, e.g. Debian's 20.10, has BuildKit built in). The
engine is looked for on first use only: a build whose RUN layers are all in the store
never calls Docker. AIRBUILD_DOCKER names the docker CLI to use instead of searching PATH.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from builder.common.errors import BuildError

ENV_CLIENT = "AIRBUILD_DOCKER"
_VERSION_FORMAT = "{{.Client.Version}}|{{.Server.Version}}|{{.Server.Os}}/{{.Server.Arch}}"


@dataclass(frozen=True)
class Engine:
    client: str           # the docker CLI binary
    mode: str             # "buildx" | "classic"
    server_version: str
    server_platform: str  # e.g. linux/amd64

    def describe(self) -> str:
        how = "docker buildx build" if self.mode == "buildx" else "classic docker build with DOCKER_BUILDKIT=1"
        return f"BuildKit via {how} ({self.client}, Docker {self.server_version})"


class NoEngine(Exception):
    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons))


def candidates() -> list[str]:
    """AIRBUILD_DOCKER, else every distinct `docker` on PATH, in order."""
    configured = os.environ.get(ENV_CLIENT)
    if configured:
        return [shutil.which(configured) or configured]
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, "docker")
        if os.access(path, os.X_OK) and os.path.realpath(path) not in {os.path.realpath(p) for p in found}:
            found.append(path)
    return found


def daemon_version(client: str) -> tuple[str, str, str]:
    """(client version, server version, server OS/arch) from `docker version`: the CLI reaches a daemon.

    Raises python-on-whales' DockerException, or OSError (FileNotFoundError for a CLI that is not there),
    when it does not."""
    version = run(_command(client) + ["version", "--format", _VERSION_FORMAT])
    client_version, server_version, server_platform = (version.strip().split("|") + ["", "", ""])[:3]
    return client_version, server_version, server_platform


def _command(client: str) -> list[str]:
    try:
        return DockerClient(client_call=[client]).client_config.docker_cmd
    except ClientNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such docker CLI", client) from None


def detect(calls: list[int] | None = None) -> Engine:
    """The first candidate CLI that reaches a daemon and can run BuildKit builds; NoEngine says why none does."""
    reasons: list[str] = []
    clients = candidates()
    if not clients:
        raise NoEngine(["no `docker` CLI on PATH (set AIRBUILD_DOCKER to one)"])
    for client in clients:
        try:
            if calls is not None:
                calls[0] += 1
            client_version, server_version, server_platform = daemon_version(client)
        except DockerException as exc:
            reasons.append(f"{client}: {_last_line(exc.stderr) or 'cannot reach the Docker daemon'}")
            continue
        except OSError as exc:
            reasons.append(f"{client}: {exc.strerror or exc}")
            continue
        try:
            if calls is not None:
                calls[0] += 1
            run(_command(client) + ["buildx", "version"])
            mode = "buildx"
        except DockerException:
            major = client_version.split(".")[0]
            if not (major.isdigit() and int(major) < 23):
                reasons.append(f"{client}: Docker CLI {client_version} without the buildx plugin (from Docker 23 on, "
                               "BuildKit builds need it)")
                continue
            mode = "classic"
        return Engine(client, mode, server_version, server_platform)
    raise NoEngine(reasons)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class EngineSession:
    """The engine of one build, found when a step first needs it; counts the calls made to it."""
    engine: Engine | None = None
    calls: list[int] = field(default_factory=lambda: [0])  # docker CLI invocations
    builds: int = 0                                          # BuildKit builds among them
    instructions: int = 0                                    # Dockerfile instructions those builds ran

    def require(self, needed_by: str, path: Path, line: int) -> Engine:
        """The engine, or a BuildError naming what needed it and why there is none."""
        if self.engine is None:
            try:
                self.engine = detect(self.calls)
            except NoEngine as exc:
                raise BuildError(
                    f"{needed_by} needs a container engine to run in, and none is reachable: "
                    + "; ".join(exc.reasons)
                    + ". Start dockerd (or point DOCKER_HOST at one), install the buildx plugin, or set "
                      f"{ENV_CLIENT} to a docker CLI that can run BuildKit builds.", path=path, line=line) from None
        return self.engine

    def summary(self) -> dict | None:
        if self.engine is None and self.calls[0] == 0:
            return None
        engine = self.engine
        return {
            "backend": "buildkit",
            "mode": engine.mode if engine else None,
            "client": engine.client if engine else None,
            "server_version": engine.server_version if engine else None,
            "description": engine.describe() if engine else None,
            "builds": self.builds,
            "instructions": self.instructions,
            "calls": self.calls[0],
        }
