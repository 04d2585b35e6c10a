"""Debian packages from packages.txt, and a Debian base built from packages: real archive, real tools.

Downloads land in a store shared between runs (`shared_store`), except where a test
needs clean caches. Images are checked with dockerd (`--network none`), with bwrap
over the unpacked root filesystem, and with dpkg inside them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run, run_cli, tool
from tests.projects import make_project

PACKAGES_TXT = "# system packages, as Astro reads them\r\ncurl\r\n\r\nlibpq5   # PostgreSQL client library\n"
DEAD_PROXY = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def build(project: Path, *extra, store: Path, base: str | None = None, env: dict | None = None,
          check: bool = True):
    args = ["build", project, "--json", *extra] + (["--base", base] if base else [])
    proc = run_cli(args, env={"AIRBUILD_CACHE_DIR": str(store), **(env or {})}, check=check)
    return json.loads(proc.stdout) if check else proc


def packages_project(root: Path, packages: str = PACKAGES_TXT) -> Path:
    project = make_project(root)
    (project / "packages.txt").write_text(packages)
    return project


def layer(result: dict, rule: str) -> dict:
    return next(l for l in result["layers"] if l["rule"] == rule)


def unpack(result: dict, dest: Path) -> Path:
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{result['oci_layout']}:{result['tag']}", dest])
    return dest / "rootfs"


def bwrap(rootfs: Path, *command: str) -> str:
    return run([tool("bwrap"), "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all",
                *command]).stdout


def docker_run(docker_client, result: dict, archive: Path, *command: str, user: str | None = None) -> str:
    ref = f"{result['image_name']}:{result['tag']}"
    docker_client("load", "-i", archive)
    try:
        return docker_client("run", "--rm", "--network", "none", *(["--user", user] if user else []),
                             ref, *command).stdout
    finally:
        docker_client("rmi", "-f", ref, check=False)


@pytest.fixture(scope="module")
def curl_build(module_tmp, debian_rootfs, shared_store):
    """curl and libpq5 from packages.txt onto the Debian rootfs, with an archive for docker."""
    root = module_tmp("curl")
    project = packages_project(root / "project")
    result = build(project, "--archive", root / "image.tar", store=shared_store, base=f"rootfs:{debian_rootfs}")
    return project, result, root / "image.tar"


def test_packages_are_locked_and_run_under_docker(curl_build, docker_client):
    project, result, archive = curl_build
    lock = json.loads((project / "astro.lock").read_text())
    entries = {e["name"]: e for e in lock["debian"]["entries"]}
    assert {"curl", "libcurl4", "libpq5"} <= set(entries)
    assert "libc6" not in entries and "libssl3" not in entries, "what the base has is not installed again"
    for entry in entries.values():
        assert set(entry) == {"name", "version", "architecture", "sha256", "size", "url"}
        assert entry["url"].endswith(".deb") and len(entry["sha256"]) == 64
    assert [l["rule"] for l in result["layers"]] == ["base", "system-packages", "project-files", "dags"]
    out = docker_run(docker_client, result, archive, "sh", "-c",
                     "curl --version && dpkg -l curl libpq5 && dpkg --audit && ldconfig -p")
    assert out.startswith("curl 7.")
    listed = {line.split()[1].split(":")[0]: line.split()[0] for line in out.splitlines() if line.startswith("ii ")}
    assert listed == {"curl": "ii", "libpq5": "ii"}
    assert "libpq.so.5 (libc6,x86-64) => /lib/x86_64-linux-gnu/libpq.so.5" in out, "the library cache lists it"


def test_packages_run_under_bwrap(curl_build, tmp_path):
    _, result, _ = curl_build
    rootfs = unpack(result, tmp_path / "bundle")
    assert bwrap(rootfs, "curl", "--version").startswith("curl 7.")
    status = bwrap(rootfs, "dpkg-query", "-W", "-f", "${Package} ${Status}\\n", "curl", "libpq5")
    assert status.splitlines() == ["curl install ok installed", "libpq5 install ok installed"]
    assert (rootfs / "lib").is_symlink(), "the base's merged-/usr links survive the layer"
    assert bwrap(rootfs, "dpkg", "-L", "curl").splitlines()[:2] == ["/.", "/usr"]


def test_unchanged_packages_and_lock_never_touch_the_network(curl_build, debian_rootfs, shared_store, tmp_path):
    """With the network cut off (a dead proxy): a comment edit rebuilds nothing, and a store holding
    only the downloaded blobs (no layer records) builds the layer again from the locked .debs."""
    project, first, _ = curl_build
    lock = (project / "astro.lock").read_bytes()
    text = (project / "packages.txt").read_text()
    (project / "packages.txt").write_text("# a comment changes nothing\n" + text)
    base = f"rootfs:{debian_rootfs}"
    again = build(project, "--locked", store=shared_store, base=base, env=DEAD_PROXY)
    assert layer(again, "system-packages")["cached"]
    assert layer(again, "system-packages")["diff_id"] == layer(first, "system-packages")["diff_id"]
    blobs_only = tmp_path / "store"
    (blobs_only / "blobs").mkdir(parents=True)
    run(["cp", "-al", shared_store / "blobs" / "sha256", blobs_only / "blobs" / "sha256"])
    shutil.rmtree(project / ".airbuild")
    rebuilt = build(project, "--locked", store=blobs_only, base=base, env=DEAD_PROXY)
    assert not layer(rebuilt, "system-packages")["cached"]
    assert layer(rebuilt, "system-packages")["diff_id"] == layer(first, "system-packages")["diff_id"]
    assert (project / "astro.lock").read_bytes() == lock


def test_two_clean_builds_give_the_same_layers(tmp_path, debian_rootfs):
    results = []
    for name in ("one", "two"):
        project = packages_project(tmp_path / name / "project")
        results.append(build(project, store=tmp_path / name / "cache", base=f"rootfs:{debian_rootfs}"))
    assert [l["diff_id"] for l in results[0]["layers"]] == [l["diff_id"] for l in results[1]["layers"]]
    assert results[0]["manifest_digest"] == results[1]["manifest_digest"]
    assert (tmp_path / "one" / "project" / "astro.lock").read_bytes() == \
        (tmp_path / "two" / "project" / "astro.lock").read_bytes()


def test_unknown_package_and_broken_pin_are_clear_errors(tmp_path, debian_rootfs, shared_store):
    project = packages_project(tmp_path / "project", "curl\nno-such-package-airbuild\n")
    proc = build(project, store=shared_store, base=f"rootfs:{debian_rootfs}", check=False)
    assert proc.returncode == 2
    assert "packages.txt:2: package 'no-such-package-airbuild' does not exist" in proc.stderr
    (project / "packages.txt").write_text("# pinned\ncurl=0.0.1-nope\n")
    proc = build(project, store=shared_store, base=f"rootfs:{debian_rootfs}", check=False)
    assert proc.returncode == 2
    assert "packages.txt:2: curl=0.0.1-nope: the archive has no such version of 'curl' (it has: 7.88" in proc.stderr
    assert not (project / "astro.lock").exists(), "a failed resolve writes no lock"


def test_locked_build_fails_when_packages_txt_changes(curl_build, tmp_path, debian_rootfs, shared_store):
    project, _, _ = curl_build
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    (copy / "packages.txt").write_text("curl\nlibpq5\njq\n")
    proc = build(copy, "--locked", store=shared_store, base=f"rootfs:{debian_rootfs}", check=False)
    assert proc.returncode == 2
    assert "packages.txt no longer matches its `debian` section" in proc.stderr


def test_debian_base_from_packages(tmp_path, shared_store, docker_client):
    """A base built from Debian packages (no Docker, no rootfs), with packages.txt on top, run as astro."""
    project = packages_project(tmp_path / "project", "curl\n")
    (project / "Dockerfile").write_text("FROM scratch\nUSER astro\n")
    (project / "astro.yaml").write_text(
        "owner: {user: astro}\nbase:\n  debian:\n    suite: bookworm\n    packages: [python3, ca-certificates]\n"
        "    users:\n      - {name: astro, uid: 50000, gid: 0, home: /usr/local/airflow}\n")
    result = build(project, "--archive", tmp_path / "image.tar", store=shared_store)
    lock = json.loads((project / "astro.lock").read_text())
    assert lock["base"]["source"] == "debian:bookworm" and lock["base"]["digest"].startswith("sha256:")
    base_names = {e["name"] for e in lock["debian-base"]["entries"]}
    assert {"python3", "ca-certificates", "dpkg", "bash", "libc6"} <= base_names
    assert {e["name"] for e in lock["debian"]["entries"]} >= {"curl"} and "libc6" not in lock["debian"]
    out = docker_run(docker_client, result, tmp_path / "image.tar", "sh", "-c",
                     "id -un && python3 -c 'import ssl, sqlite3; print(len(ssl.create_default_context()"
                     ".get_ca_certs()) > 100)' && curl --version && dpkg -l python3 curl | grep -c '^ii' "
                     "&& ls -ld /tmp /usr/local/airflow && readlink /bin /usr/bin/awk", user="astro")
    lines = out.splitlines()
    assert lines[:2] == ["astro", "True"] and lines[2].startswith("curl 7.")
    assert "2" in lines
    assert any(l.startswith("drwxrwxrwt") and l.endswith("/tmp") for l in lines)
    assert any("astro" in l and l.endswith("/usr/local/airflow") for l in lines)
    assert lines[-2:] == ["usr/bin", "/etc/alternatives/awk"]
    # The lock pins the base: a locked rebuild gives the same image, without the network.
    again = build(project, "--locked", store=shared_store, env=DEAD_PROXY)
    assert again["manifest_digest"] == result["manifest_digest"]


def test_a_debian_base_from_the_command_line(tmp_path, shared_store):
    assert "debian:SUITE[:PACKAGE,...]" in " ".join(run_cli(["build", "--help"]).stdout.split())
    project = make_project(tmp_path / "project")
    (project / "astro.yaml").write_text("workdir: /opt/airflow\n")
    result = build(project, store=shared_store, base="debian:bookworm:python3,ca-certificates")
    config = json.loads(run_cli(["inspect", result["oci_layout"], "--json"]).stdout)["config"]
    # As the Astro runtime sets them, at the project's workdir: Airflow finds dags/ and DAGs import include.*
    assert config["Env"][1:3] == ["AIRFLOW_HOME=/opt/airflow", "PYTHONPATH=/opt/airflow"]
    lock = json.loads((project / "astro.lock").read_text())
    assert lock["base"]["source"] == "debian:bookworm"
    assert {"python3", "ca-certificates", "dpkg"} <= {e["name"] for e in lock["debian-base"]["entries"]}
    assert result["layers"][0]["reason"] == "base image debian:bookworm"
    for bad in ("debian:", "debian:bookworm:Not_A_Package"):
        proc = run_cli(["build", project, "--base", bad], env={"AIRBUILD_CACHE_DIR": str(shared_store)}, check=False)
        assert proc.returncode == 2 and "debian:SUITE" in proc.stderr
