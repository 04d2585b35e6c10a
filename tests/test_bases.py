"""Base images from an OCI layout, an image tarball (ours or `docker save`), and a rootfs tarball; the lock."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.helpers import run_cli
from tests.projects import make_project


def build_json(project: Path, base: str, *extra: str, check: bool = True):
    proc = run_cli(["build", project, "--base", base, "--json", *extra], check=check)
    return json.loads(proc.stdout) if check else proc


def tiny_rootfs(path: Path) -> bytes:
    """A small root filesystem tarball (etc/passwd with an astro user); returns its uncompressed bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (("etc/passwd", b"root:x:0:0::/root:/bin/sh\nastro:x:50000:0::/usr/local/airflow:/bin/sh\n"),
                           ("etc/group", b"root:x:0:\n"), ("bin/tool", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    path.write_bytes(gzip.compress(raw))
    return raw


def test_compressed_rootfs_is_the_base_layer_byte_for_byte(tmp_path, airbuild_cache):
    raw = tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\nowner:\n  user: astro\n")
    result = json.loads(run_cli(["build", project, "--json"]).stdout)
    assert result["layers"][0]["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    again = json.loads(run_cli(["build", project, "--json"]).stdout)
    assert again["manifest_digest"] == result["manifest_digest"]


def test_oci_layout_base_by_tag_and_by_digest(tmp_path, debian_rootfs, airbuild_cache):
    base_project = make_project(tmp_path / "base")
    base = build_json(base_project, f"rootfs:{debian_rootfs}", "--oci", tmp_path / "layout")
    app = make_project(tmp_path / "app")
    by_tag = build_json(app, f"oci:{tmp_path / 'layout'}:{base['tag']}")
    by_digest = build_json(app, f"oci:{tmp_path / 'layout'}@{base['manifest_digest']}")
    assert by_tag["manifest_digest"] == by_digest["manifest_digest"]
    base_diff_ids = [l["diff_id"] for l in base["layers"]]
    assert [l["diff_id"] for l in by_tag["layers"][:len(base_diff_ids)]] == base_diff_ids
    wrong = build_json(app, f"oci:{tmp_path / 'layout'}:nope", check=False)
    assert wrong.returncode == 2 and base["tag"] in wrong.stderr, "names the tags the layout has"


def test_docker_save_archive_as_base(tmp_path, debian_rootfs, airbuild_cache, docker_client):
    seed = make_project(tmp_path / "seed")
    seeded = build_json(seed, f"rootfs:{debian_rootfs}", "--archive", tmp_path / "seed.tar")
    ref = f"seed:{seeded['tag']}"
    docker_client("load", "-i", tmp_path / "seed.tar")
    try:
        docker_client("save", "-o", tmp_path / "saved.tar", ref)  # docker's own format: <id>/layer.tar
        with tarfile.open(tmp_path / "saved.tar") as saved:
            assert "manifest.json" in saved.getnames() and "index.json" not in saved.getnames()
        app = make_project(tmp_path / "app")
        (app / "astro.yaml").write_text("base:\n  archive: ../saved.tar\n")
        result = json.loads(run_cli(["build", app, "--json", "--archive", tmp_path / "app.tar"]).stdout)
        assert [l["diff_id"] for l in result["layers"][:3]] == [l["diff_id"] for l in seeded["layers"]]
        app_ref = f"app:{result['tag']}"
        docker_client("load", "-i", tmp_path / "app.tar")
        out = docker_client("run", "--rm", "--network", "none", app_ref, "python3", "-c",
                            "import pathlib; print(pathlib.Path('/usr/local/airflow/dags/etl.py').exists())").stdout
        assert out.strip() == "True"
        docker_client("rmi", "-f", app_ref, check=False)
    finally:
        docker_client("rmi", "-f", ref, check=False)


def test_platform_mismatch_is_an_error(tmp_path, airbuild_cache):
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("platform: linux/arm64\nbase:\n  rootfs: ../rootfs.tar.gz\n")
    layout_result = run_cli(["build", project, "--json"])  # a rootfs takes the build's platform
    assert json.loads(layout_result.stdout)["manifest_digest"]
    other = make_project(tmp_path / "q")
    proc = run_cli(["build", other, "--base", f"oci:{project / '.airbuild' / 'image'}"], check=False)
    assert proc.returncode == 2 and "linux/arm64" in proc.stderr and "linux/amd64" in proc.stderr


def test_lock_pins_the_base_and_locked_builds_fail_when_it_moves(tmp_path, airbuild_cache):
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    missing = run_cli(["build", project, "--locked"], check=False)
    assert missing.returncode == 2 and "no lock file" in missing.stderr

    run_cli(["lock", project])
    lock = (project / "astro.lock").read_bytes()
    first = json.loads(run_cli(["build", project, "--locked", "--json"]).stdout)
    (project / "dags" / "etl.py").write_text("# changed\n")
    second = json.loads(run_cli(["build", project, "--json"]).stdout)
    assert second["manifest_digest"] != first["manifest_digest"]
    assert (project / "astro.lock").read_bytes() == lock, "a DAG edit never changes the lock"
    assert not second["lock_changed"]

    tiny = tiny_rootfs(tmp_path / "other.tar.gz")
    (tmp_path / "rootfs.tar.gz").write_bytes(gzip.compress(tiny + b"\0" * 1024))
    moved = run_cli(["build", project, "--locked"], check=False)
    assert moved.returncode == 2
    assert "the base changed" in moved.stderr and str(project / "astro.lock") in moved.stderr
    assert (project / "astro.lock").read_bytes() == lock, "--locked never rewrites the lock"
    relocked = json.loads(run_cli(["build", project, "--json"]).stdout)
    assert relocked["lock_changed"] and (project / "astro.lock").read_bytes() != lock
