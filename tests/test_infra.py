"""Proves the test infrastructure itself: fixtures, services and tools work."""

from __future__ import annotations

import json
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.helpers import CommandFailed, run, run_cli, tool


def test_rootfs_has_python_and_astro_user(debian_rootfs: Path) -> None:
    with tarfile.open(debian_rootfs) as tar:
        assert "./usr/bin/python3" in tar.getnames()
        passwd = tar.extractfile("./etc/passwd").read().decode()
    assert "astro:x:50000:0::/usr/local/airflow:/bin/bash" in passwd.splitlines()


@pytest.fixture(scope="module")
def rootfs_image(debian_rootfs: Path, docker_client):
    image = f"airbuild-test/rootfs:{uuid.uuid4().hex[:12]}"
    docker_client("import", debian_rootfs, image)
    yield image
    docker_client("rmi", image)


def test_docker_runs_rootfs_image(rootfs_image: str, docker_client) -> None:
    docker_client("run", "--rm", "--network", "none", "--user", "astro", rootfs_image,
                  "python3", "-c", "import ssl, sqlite3")


def test_skopeo_pushes_to_registry(rootfs_image: str, registry: str) -> None:
    skopeo = tool("skopeo")
    ref = f"docker://{registry}/{rootfs_image}"
    run([skopeo, "copy", "--quiet", "--dest-tls-verify=false", f"docker-daemon:{rootfs_image}", ref])
    info = json.loads(run([skopeo, "inspect", "--tls-verify=false", ref]).stdout)
    assert info["Digest"].startswith("sha256:")
    assert len(info["Layers"]) == 1


@pytest.mark.parametrize("name", ["skopeo", "umoci", "bwrap", "mmdebstrap"])
def test_tools_on_path(name: str) -> None:
    assert os.access(tool(name), os.X_OK)


def test_airbuild_cache_is_fresh_and_exported(airbuild_cache: Path) -> None:
    assert os.environ["AIRBUILD_CACHE_DIR"] == str(airbuild_cache)
    assert list(airbuild_cache.iterdir()) == []


def test_run_cli_passes_args_cwd_and_env(tmp_path: Path) -> None:
    # A stand-in `builder` package in cwd shadows the real one, so this checks
    # only the helper's plumbing, whatever state the CLI is in.
    fake = tmp_path / "builder"
    fake.mkdir()
    (fake / "__init__.py").write_text("")  # a regular package: a namespace one would lose to PYTHONPATH's
    (fake / "__main__.py").write_text(
        "import os, sys\n"
        "print(sys.argv[1:], os.getcwd(), os.environ['PROBE'])\n"
        "sys.exit(3 if '--fail' in sys.argv else 0)\n"
    )
    proc = run_cli(["build", "--json"], cwd=tmp_path, env={"PROBE": "yes"})
    assert proc.stdout.strip() == f"['build', '--json'] {tmp_path} yes"
    assert run_cli(["--fail"], cwd=tmp_path, env={"PROBE": ""}, check=False).returncode == 3
    with pytest.raises(CommandFailed):
        run_cli(["--fail"], cwd=tmp_path, env={"PROBE": ""})
