"""RUN on a Docker engine that is not local: the BuildKit backend reached only through DOCKER_HOST=tcp://.

The engine is the suite's dockerd, exposed on a loopback TCP port by a forwarder in this test
(dockerd itself listens on its unix socket only); the docker CLI airbuild drives is given
DOCKER_HOST and no Docker context, so every byte of the build goes over TCP, counted here.
"""

from __future__ import annotations

import json
import tarfile
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.projects import make_project, set_age


def daemon_socket() -> str:
    host = subprocess.run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
                          capture_output=True, text=True).stdout.strip()
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


class Forwarder:
    """127.0.0.1:PORT -> the daemon's unix socket, counting connections."""

    def __init__(self, target: str):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def tcp_engine():
    forwarder = Forwarder(daemon_socket())
    yield forwarder
    forwarder.close()


def test_run_builds_on_an_engine_reached_over_tcp(tmp_path, debian_rootfs, airbuild_cache, docker_client,
                                                  tcp_engine):
    project = make_project(tmp_path / "remote-run")
    (project / "Dockerfile").write_text("FROM scratch\nRUN echo built-remotely > /opt-remote.txt\n")
    set_age(project, 3600)
    home = tmp_path / "home"  # no ~/.docker: no context that could name the local socket
    home.mkdir()
    env = {"DOCKER_HOST": f"tcp://127.0.0.1:{tcp_engine.port}", "HOME": str(home), "DOCKER_CONFIG": str(home)}
    proc = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json"], env=env)
    result = json.loads(proc.stdout)
    run_layer = next(layer for layer in result["layers"] if layer["rule"].startswith("dockerfile:RUN"))
    assert run_layer["source"] == "built" and result["engine"]["builds"] == 1
    assert tcp_engine.connections > 0, "the engine was reached through the TCP endpoint"
    with tarfile.open(Path(result["oci_layout"]) / "blobs" / run_layer["digest"].replace(":", "/")) as t:
        assert t.extractfile("opt-remote.txt").read() == b"built-remotely\n"
    images = docker_client("image", "ls", "--format", "{{.Repository}}", check=False).stdout.split()
    for ref in {i for i in images if "remote-run" in i}:
        docker_client("image", "rm", "-f", ref, check=False)

    # An engine that is not there is a clear error naming DOCKER_HOST's endpoint, not a silent local build.
    (project / "Dockerfile").write_text("FROM scratch\nRUN echo again > /again.txt\n")
    closed = {**env, "DOCKER_HOST": "tcp://127.0.0.1:9"}
    failed = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate"], env=closed, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "127.0.0.1:9" in failed.stderr or "daemon" in failed.stderr.lower(), failed.stderr[-2000:]
