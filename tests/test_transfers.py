"""Blobs move several at a time (AIRBUILD_TRANSFERS), the manifest last, with progress on a terminal only.

Against the loopback registry: a push with 6 transfers at once gives the manifest a push with
one gives, and the registry serves every blob with its digest; an image of several layers
pulled as a base 4 at a time has every layer, verified; a deploy under a pseudo-terminal
(`script`) shows a transfer bar, piped it prints plain lines, and --json prints none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import urllib.request
import uuid
from pathlib import Path

from tests.helpers import REPO, run, run_cli, tool
from tests.projects import make_project
from tests.test_bases import tiny_rootfs


def deploy_project(tmp_path: Path, name: str) -> Path:
    """A project of several layers with blobs big enough for chunked uploads (incompressible include/)."""
    project = make_project(tmp_path / name)
    tiny_rootfs(tmp_path / f"{name}-rootfs.tar.gz")
    (project / "astro.yaml").write_text(f"base:\n  rootfs: ../{name}-rootfs.tar.gz\n")
    (project / "include" / "big.bin").write_bytes(os.urandom(3 << 20))
    (project / "plugins" / "helper.py").write_text("VALUE = %r\n" % os.urandom(2048).hex())
    return project


def deploy(project: Path, target: str, transfers: int, store: Path, *extra: str):
    env = {"AIRBUILD_TRANSFERS": str(transfers), "AIRBUILD_UPLOAD_CHUNK_BYTES": str(1 << 20),
           "AIRBUILD_CACHE_DIR": str(store)}
    return run_cli(["deploy", project, "--to", target, "--force", "--no-validate", *extra], env=env)


def registry_manifest(registry: str, repository: str, digest: str) -> dict:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{digest}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return json.loads(data)


def test_a_concurrent_push_gives_the_same_manifest_and_every_blob(tmp_path, registry):
    project = deploy_project(tmp_path, "app")
    one, six = f"transfer-test/{uuid.uuid4().hex[:12]}", f"transfer-test/{uuid.uuid4().hex[:12]}"
    serial = json.loads(deploy(project, f"{registry}/{one}", 1, tmp_path / "store-1", "--json").stdout)
    parallel = json.loads(deploy(project, f"{registry}/{six}", 6, tmp_path / "store-6", "--json").stdout)
    assert parallel["manifest_digest"] == serial["manifest_digest"]
    assert parallel["blobs_uploaded"] == serial["blobs_uploaded"] >= 4, "config, base, project files, DAGs"

    manifest = registry_manifest(registry, six, parallel["manifest_digest"])
    for blob in [manifest["config"], *manifest["layers"]]:
        with urllib.request.urlopen(f"http://{registry}/v2/{six}/blobs/{blob['digest']}", timeout=30) as response:
            data = response.read()
        assert len(data) == blob["size"] and "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
    inspected = json.loads(run([tool("skopeo"), "inspect", "--tls-verify=false",
                                f"docker://{registry}/{six}@{parallel['manifest_digest']}"]).stdout)
    assert inspected["Layers"] == [l["digest"] for l in manifest["layers"]]


def test_a_base_of_several_layers_is_pulled_concurrently_and_verified(tmp_path, registry):
    project = deploy_project(tmp_path, "app")
    repository = f"transfer-test/{uuid.uuid4().hex[:12]}"
    pushed = json.loads(deploy(project, f"{registry}/{repository}", 4, tmp_path / "store-push", "--json").stdout)
    layers = registry_manifest(registry, repository, pushed["manifest_digest"])["layers"]
    assert len(layers) >= 3

    app = make_project(tmp_path / "on-top")
    (app / "astro.yaml").write_text(f"base:\n  image: {registry}/{repository}@{pushed['manifest_digest']}\n")
    env = {"AIRBUILD_TRANSFERS": "4", "AIRBUILD_CACHE_DIR": str(tmp_path / "store-pull")}
    built = json.loads(run_cli(["build", app, "--json", "--no-validate"], env=env).stdout)
    base_rows = [l for l in built["layers"] if l["rule"] == "base"]
    assert [l["digest"] for l in base_rows] == [l["digest"] for l in layers]
    blobs = tmp_path / "store-pull" / "blobs" / "sha256"
    for layer in layers:
        data = (blobs / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]


def test_transfer_progress_on_a_terminal_plain_lines_when_piped_and_none_with_json(tmp_path, registry):
    project = deploy_project(tmp_path, "app")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(tmp_path / "store"),
           "AIRBUILD_TRANSFERS": "4", "COLUMNS": "120"}
    env.pop("AIRBUILD_PROGRESS", None)

    def on_a_terminal(*extra: str) -> str:
        command = shlex.join([sys.executable, "-m", "builder", "deploy", str(project), "--force", "--no-validate",
                              "--to", f"{registry}/transfer-test/{uuid.uuid4().hex[:12]}", *extra])
        return run(["script", "-qec", command, "/dev/null"], env=env).stdout

    shown = on_a_terminal()
    assert re.search(r"\d+\.\d/\d+\.\d", shown), shown[-2000:]
    assert re.search(r"[kM]B/s", shown) and "\x1b[2K" in shown, "a bar redrawn in place: bytes done/total, rate"
    quiet = on_a_terminal("--json")
    assert "pushing to" not in quiet and "B/s" not in quiet and "\x1b[" not in quiet
    assert json.loads(quiet[quiet.index("{"):])["manifest_digest"]

    piped = run([sys.executable, "-m", "builder", "deploy", str(project), "--force", "--no-validate",
                 "--to", f"{registry}/transfer-test/{uuid.uuid4().hex[:12]}"], env=env)
    lines = [line for line in piped.stderr.splitlines() if line.startswith("pushing to")]
    assert lines and lines[-1].endswith("/s)"), piped.stderr[-2000:]
    assert "\x1b[" not in piped.stderr
