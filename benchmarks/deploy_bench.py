"""Benchmark `airbuild deploy` against `docker build` + `docker push` after a one-DAG edit.

    python3 benchmarks/deploy_bench.py [--dags 1000] [--include-mb 50] [--repeat 3] [--out FILE]

Both push to the same kind of registry: a `docker-registry` this script starts on a free
loopback port (and stops), each tool behind its own byte-counting TCP relay so the bytes
sent are measured the same way for both. Prints one JSON object on stdout; see
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (the project generator and helpers)

REPO = bb.REPO


class CountingRelay:
    """A TCP relay on loopback that counts the bytes clients send upstream. Stops with the benchmark."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sent = 0
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        self.server.close()

    def reset(self) -> int:
        with self.lock:
            sent, self.sent = self.sent, 0
        return sent

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, dest: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                dest.sendall(data)
                if count:
                    with self.lock:
                        self.sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, dest):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def start_registry(directory: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (directory / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {directory / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(directory / "registry.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("docker-registry did not start")


def bench_airbuild(template: Path, work: Path, base: Path, relay: CountingRelay, repeat: int) -> dict:
    project = work / "airbuild"
    shutil.copytree(template, project, symlinks=True)
    target = f"127.0.0.1:{relay.port}/bench/airbuild"
    with open(project / "astro.yaml", "a") as handle:
        handle.write(f"targets:\n  bench:\n    registry: {target}\n")
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(work / "store"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "builder", "deploy", str(project), "--base", f"rootfs:{base}", "--json"]
    bb.log("airbuild: cold deploy (empty store, empty repository)")
    cold_s, done = bb.timed(command, cwd=REPO, env=env)
    cold = json.loads(done.stdout)
    cold_wire = relay.reset()
    walls, internal, reported, wire, uploaded = [], [], [], [], []
    for n in range(repeat):
        bb.log(f"airbuild: one-DAG edit + deploy {n + 1}/{repeat}")
        bb.edit_dag(project, n)
        wall, done = bb.timed(command, cwd=REPO, env=env)
        result = json.loads(done.stdout)
        walls.append(wall)
        internal.append(result["duration_s"])
        reported.append(result["bytes_uploaded"])
        uploaded.append(result["blobs_uploaded"])
        wire.append(relay.reset())
    return {"cold_deploy_s": round(cold_s, 3), "cold_bytes_uploaded": cold["bytes_uploaded"],
            "cold_wire_bytes": cold_wire, "dag_edit_deploy_s": bb.spread(walls),
            "dag_edit_deploy_internal_s": bb.spread(internal), "dag_edit_bytes_uploaded": reported,
            "dag_edit_wire_bytes": wire, "dag_edit_blobs_uploaded": uploaded}


def bench_docker(client: str, template: Path, work: Path, base: Path, relay: CountingRelay, repeat: int,
                 dockerfile_text: str = bb.BUILDKIT_DOCKERFILE, tag: Callable[[int], str] = lambda n: "latest") -> dict:
    """`docker build` + `docker push` of `template` after each one-DAG edit; `tag(n)` names round n's image
    (0: the cold round)."""
    project = work / "docker"
    shutil.copytree(template, project, symlinks=True)
    dockerfile = work / "Dockerfile.bench"
    dockerfile.write_text(dockerfile_text)
    repository = f"127.0.0.1:{relay.port}/bench/docker"
    images: set[str] = set()
    docker = bb.Docker(client, dockerfile, work / "docker.iid")
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}

    def build_and_push(n: int = 0) -> tuple[float, float]:
        image = f"{repository}:{tag(n)}"
        images.add(image)
        build_s, _ = bb.timed([client, "build", "--network", "host", "-f", str(dockerfile), "-t", image,
                               str(project)], env=env)
        push_s, _ = bb.timed([client, "push", image])
        return build_s, push_s

    bb.log(f"docker: importing the base as {bb.BASE_TAG} (not timed)")
    docker.run("import", str(base), bb.BASE_TAG)
    try:
        docker.reset()
        bb.log("docker: cold build + push (no build cache, empty repository)")
        cold_build, cold_push = build_and_push()
        cold_wire = relay.reset()
        builds, pushes, totals, wire = [], [], [], []
        for n in range(repeat):
            bb.log(f"docker: one-DAG edit + build + push {n + 1}/{repeat}")
            bb.edit_dag(project, n)
            build_s, push_s = build_and_push(n + 1)
            builds.append(build_s)
            pushes.append(push_s)
            totals.append(build_s + push_s)
            wire.append(relay.reset())
        return {"docker_client": client,
                "docker_server_version": docker.run("version", "--format", "{{.Server.Version}}").stdout.strip(),
                "docker_storage_driver": docker.run("info", "--format", "{{.Driver}}").stdout.strip(),
                "cold_build_push_s": round(cold_build + cold_push, 3), "cold_wire_bytes": cold_wire,
                "dag_edit_build_s": bb.spread(builds), "dag_edit_push_s": bb.spread(pushes),
                "dag_edit_build_push_s": bb.spread(totals), "dag_edit_wire_bytes": wire}
    finally:
        bb.log("docker: removing the images and build cache this run made")
        subprocess.run([client, "rmi", "-f", *images], capture_output=True)
        docker.clean_up()


def main() -> int:
    parser = argparse.ArgumentParser(description="airbuild deploy vs docker build + docker push after a DAG edit")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--include-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = bb.debian_rootfs()
    with tempfile.TemporaryDirectory(prefix="airbuild-deploy-bench-") as tmp:
        work = Path(tmp)
        bb.log(f"generating {args.dags} DAGs and {args.include_mb} MiB of include/ data")
        files = bb.generate_project(work / "template", args.dags, args.include_mb)
        (work / "registry").mkdir()
        registry, port = start_registry(work / "registry")
        relays = [CountingRelay(port), CountingRelay(port)]
        try:
            airbuild = bench_airbuild(work / "template", work, base, relays[0], args.repeat)
            client = bb.buildkit_client()
            docker, skipped = None, None
            if client is None:
                skipped = "no docker CLI on PATH can run BuildKit builds"
            else:
                try:
                    docker = bench_docker(client, work / "template", work, base, relays[1], args.repeat)
                except RuntimeError as exc:
                    skipped = str(exc)
        finally:
            for relay in relays:
                relay.stop()
            registry.terminate()
            registry.wait(10)
    report = {
        "project": {"dags": args.dags, "include_mb": args.include_mb, "files": files},
        "airbuild": airbuild,
        "docker": docker,
        **({"docker_skipped": skipped} if skipped else {}),
        "ratio_dag_edit": (round(docker["dag_edit_build_push_s"]["median"] / airbuild["dag_edit_deploy_s"]["median"], 2)
                           if docker else None),
    }
    bb.emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
