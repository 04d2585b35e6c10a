"""The build server (builder/cli/server.py): `build` handed to a warm process gives what a build in the
client's own process gives, with the client's streams, environment and exit codes; Ctrl-C and a killed
client reach the command."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cli
from tests.projects import make_project, set_age
from tests.test_bases import tiny_rootfs


@pytest.fixture
def runtime():
    """A runtime directory of this test's own (so its own server; short, as a socket's path must be), and that
    server stopped at the end."""
    directory = Path(tempfile.mkdtemp(prefix="ab-run-", dir="/tmp"))
    yield directory
    for pid in server_pids(directory):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)


def server_pids(runtime: Path) -> list[int]:
    log = runtime / "airbuild" / "server.log"
    return [int(p) for p in re.findall(r"airbuild server (\d+) on", log.read_text())] if log.exists() else []


def served(runtime: Path) -> list[int]:
    log = runtime / "airbuild" / "server.log"
    return [int(p) for p in re.findall(r"command in process (\d+)", log.read_text())] if log.exists() else []


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def project_on_rootfs(tmp_path: Path) -> Path:
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    set_age(tmp_path, 3600)
    return project


def started_server(tmp_path: Path, runtime: Path, env: dict) -> None:
    """The first command runs in its own process and starts the server; wait until it listens."""
    run_cli(["build", tmp_path / "missing"], env=env, check=False)
    wait_for(lambda: list((runtime / "airbuild").glob("server-*.sock")), "the server's socket")


def test_a_served_build_is_the_build_the_client_would_run(tmp_path, airbuild_cache, runtime):
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    project = project_on_rootfs(tmp_path)
    started_server(tmp_path, runtime, env)

    here = json.loads(run_cli(["build", project, "--json", "--no-validate"],
                              env={**env, "AIRBUILD_SERVER": "0"}).stdout)
    before = len(served(runtime))
    (project / "dags" / "etl.py").write_text("# edited\n")
    there = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)
    assert len(served(runtime)) == before + 1, "the command ran in a process the server forked"
    assert there["layers"][-1]["cached"] is False and there["manifest_digest"] != here["manifest_digest"]

    # The client's environment, not the server's: SOURCE_DATE_EPOCH moves the digest as it does here.
    epoch_there = run_cli(["build", project, "--json", "--no-validate"], env={**env, "SOURCE_DATE_EPOCH": "7"})
    epoch_here = run_cli(["build", project, "--json", "--no-validate"],
                         env={**env, "SOURCE_DATE_EPOCH": "7", "AIRBUILD_SERVER": "0"})
    assert json.loads(epoch_there.stdout)["manifest_digest"] == json.loads(epoch_here.stdout)["manifest_digest"]

    # Its working directory, streams and exit codes: a bad option, a project that is not there.
    relative = json.loads(run_cli(["build", "p", "--json", "--no-validate"], cwd=tmp_path, env=env).stdout)
    assert relative["oci_layout"] == str(project / ".airbuild" / "image")
    missing = run_cli(["build", tmp_path / "nowhere"], env=env, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli(["build", project, "--no-such-option"], env=env, check=False)
    assert bad.returncode == 2 and "--no-such-option" in bad.stderr
    assert len(served(runtime)) == before + 5


def test_a_deploy_is_served_too(tmp_path, airbuild_cache, runtime, registry):
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    project = project_on_rootfs(tmp_path)
    started_server(tmp_path, runtime, env)
    before = len(served(runtime))
    target = f"{registry}/served-deploy/{os.getpid()}-{time.monotonic_ns()}"
    result = json.loads(run_cli(["deploy", project, "--to", target, "--no-validate", "--json"], env=env).stdout)
    assert len(served(runtime)) == before + 1, "the deploy ran in a process the server forked"
    assert result["reference"] == f"{target}@{result['manifest_digest']}" and result["blobs_uploaded"] >= 3


def blocked_build(tmp_path: Path, env: dict) -> tuple[subprocess.Popen, int]:
    """A served build that waits forever (its astro.yaml is a FIFO nobody writes), and the server's process
    running it."""
    project = project_on_rootfs(tmp_path)
    (project / "astro.yaml").unlink()
    os.mkfifo(project / "astro.yaml")
    before = len(served(Path(env["XDG_RUNTIME_DIR"])))
    client = subprocess.Popen([sys.executable, "-m", "builder", "build", str(project), "--no-validate"],
                              env={**os.environ, "PYTHONPATH": str(REPO), **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(served(Path(env["XDG_RUNTIME_DIR"]))) > before, "the served command")
    child = served(Path(env["XDG_RUNTIME_DIR"]))[-1]
    time.sleep(0.5)  # into the read of the Dockerfile
    return client, child


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_ctrl_c_reaches_the_served_command(tmp_path, airbuild_cache, runtime):
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    started_server(tmp_path, runtime, env)
    client, child = blocked_build(tmp_path, env)
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130 and "interrupted" in err and "Traceback" not in err
    wait_for(lambda: gone(child), "the served command to end")


def test_a_killed_client_interrupts_its_command(tmp_path, airbuild_cache, runtime):
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    started_server(tmp_path, runtime, env)
    client, child = blocked_build(tmp_path, env)
    client.kill()
    client.communicate(timeout=60)
    wait_for(lambda: gone(child), "the served command to end")
    assert server_pids(runtime) and not gone(server_pids(runtime)[0]), "the server itself serves on"
