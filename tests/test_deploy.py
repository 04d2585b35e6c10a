"""`airbuild deploy` to real registries: what is uploaded, read back with skopeo, faults, refusals, history."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path


from tests.helpers import run, run_cli, tool
from tests.projects import make_project, set_age
from tests.fault_proxy import FaultProxy
from tests.test_bases import tiny_rootfs


def deploy(project: Path, *extra: str, env: dict | None = None, check: bool = True):
    proc = run_cli(["deploy", project, "--json", *extra], env=env, check=check)
    return json.loads(proc.stdout) if check else proc


def make_deploy_project(tmp_path: Path, targets: str, *, big_include: int = 0, rootfs: Path | None = None) -> Path:
    """A project on a tiny rootfs (or on `rootfs`, e.g. the Debian base with Python), with `targets`."""
    project = make_project(tmp_path / "app")
    if rootfs is None:
        tiny_rootfs(tmp_path / "rootfs.tar.gz")
        rootfs = Path("../rootfs.tar.gz")
    (project / "astro.yaml").write_text(f"base:\n  rootfs: {rootfs}\n" + targets)
    if big_include:
        (project / "include" / "big.bin").write_bytes(os.urandom(big_include))  # incompressible
    # A DAG of realistic size (about 30 KB, about half of it left by compression): the manifest is small beside the DAG layer.
    table = "\n".join(f"    {os.urandom(8).hex()!r}: {os.urandom(24).hex()!r}," for _ in range(400))
    (project / "dags" / "lookup.py").write_text(f"LOOKUP = {{\n{table}\n}}\n")
    set_age(project, 3600)
    return project


def repo_name() -> str:
    return f"deploy-test/{uuid.uuid4().hex[:12]}"


def skopeo_inspect(ref: str, *extra: str) -> dict:
    return json.loads(run([tool("skopeo"), "inspect", "--tls-verify=false", *extra, f"docker://{ref}"]).stdout)


def blob_sizes(ref: str) -> tuple[dict[str, int], int, int]:
    """(layer digest -> size, config size, manifest size) of an image in a registry, read with skopeo."""
    raw = run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout.encode()
    manifest = json.loads(raw)
    return {l["digest"]: l["size"] for l in manifest["layers"]}, manifest["config"]["size"], len(raw)


def git(project: Path, *args: str) -> str:
    return run(["git", "-C", project, "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]).stdout


def test_deploy_then_a_dag_edit_uploads_one_layer(tmp_path, airbuild_cache, registry):
    target = f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: [latest]\n")
    first = deploy(project)
    assert first["target"] == "prod" and first["reference"] == f"{target}@{first['manifest_digest']}"
    assert first["blobs_uploaded"] >= 4 and first["blobs_skipped"] == 0
    for key in ("tag", "blobs_mounted", "bytes_uploaded", "duration_s"):
        assert key in first
    info = skopeo_inspect(f"{target}:{first['tag']}")
    assert info["Digest"] == first["manifest_digest"]
    assert skopeo_inspect(f"{target}:latest")["Digest"] == first["manifest_digest"]
    assert first["manifest_digest"] == json.loads((project / ".airbuild" / "build.json").read_text())["manifest_digest"]

    copied = tmp_path / "copied"
    run([tool("skopeo"), "copy", "--quiet", "--src-tls-verify=false", f"docker://{target}:{first['tag']}",
         f"oci:{copied}:x"])
    index = json.loads((copied / "index.json").read_text())
    assert index["manifests"][0]["digest"] == first["manifest_digest"], "skopeo reads back the same bytes"

    (project / "dags" / "etl.py").write_text((project / "dags" / "etl.py").read_text() + "# one edit\n")
    second = deploy(project)
    assert second["blobs_uploaded"] == 2, "one layer blob plus the config (the manifest is counted apart)"
    assert second["blobs_skipped"] == first["blobs_uploaded"] - 2 and second["blobs_mounted"] == 0
    layers, config_size, manifest_size = blob_sizes(f"{target}@{second['manifest_digest']}")
    old_layers, _, _ = blob_sizes(f"{target}@{first['manifest_digest']}")
    new = [size for digest, size in layers.items() if digest not in old_layers]
    assert len(new) == 1
    expected = new[0] + config_size + manifest_size
    # Every byte sent counts: the manifest goes up twice (by digest, then by tag).
    assert abs(second["bytes_uploaded"] - expected) <= 0.1 * expected, (second["bytes_uploaded"], expected)

    history = json.loads(run_cli(["history", project, "--json"]).stdout)
    assert [h["digest"] for h in history] == [first["manifest_digest"], second["manifest_digest"]]
    assert history[-1]["bytes_uploaded"] == second["bytes_uploaded"] and history[-1]["target"] == "prod"
    assert "prod" in run_cli(["history", project]).stdout


def test_second_repository_mounts_blobs(tmp_path, airbuild_cache, registry):
    one, two = f"{registry}/{repo_name()}", f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  one:\n    registry: {one}\n  two:\n    registry: {two}\n")
    first = deploy(project, "--target", "one")
    second = deploy(project, "--target", "two")
    assert second["manifest_digest"] == first["manifest_digest"]
    assert second["blobs_mounted"] == first["blobs_uploaded"] and second["blobs_uploaded"] == 0
    assert second["bytes_uploaded"] < 2000, "only the manifest"
    assert skopeo_inspect(f"{two}:{second['tag']}")["Digest"] == second["manifest_digest"]


def test_target_selection(tmp_path, airbuild_cache, registry):
    project = make_deploy_project(tmp_path, "")
    none = deploy(project, check=False)
    assert none.returncode == 2 and "targets:" in none.stderr and "--to" in none.stderr
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\ntargets:\n"
                                        f"  a:\n    registry: {registry}/x/a\n  b:\n    registry: {registry}/x/b\n")
    two = deploy(project, check=False)
    assert two.returncode == 2 and "a, b" in two.stderr and "--target" in two.stderr
    unknown = deploy(project, "--target", "c", check=False)
    assert unknown.returncode == 2 and "no target 'c'" in unknown.stderr
    (project / "astro.yaml").write_text("targets:\n  prod:\n    registry: Bad Name\n")
    bad = run_cli(["deploy", project], check=False)
    assert bad.returncode == 2 and "astro.yaml:3" in bad.stderr and "targets.prod.registry" in bad.stderr
    direct = deploy(make_deploy_project(tmp_path / "other", ""), "--to", f"{registry}/{repo_name()}")
    assert direct["blobs_uploaded"] >= 4


def test_dirty_tree_validation_and_tests_refuse_unless_forced(tmp_path, airbuild_cache, registry, debian_rootfs):
    target = f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n", rootfs=debian_rootfs)
    (project / "requirements.txt").write_text("pytest==8.3.5\n")  # --pytest runs the image's pytest
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "Release 1: first DAGs\n\nwith a body")
    clean = deploy(project)
    record = json.loads(run_cli(["history", project, "--json"]).stdout)[-1]
    assert record["description"] == "Release 1: first DAGs\n\nwith a body"
    assert record["git_commit"] == git(project, "rev-parse", "HEAD").strip() == clean["git_commit"]

    (project / "dags" / "new.py").write_text("x = 1\n")
    dirty = deploy(project, check=False)
    assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr and "dags/new.py" in dirty.stderr
    forced = deploy(project, "--force", "--description", "hotfix")
    assert forced["description"] == "hotfix" and forced["warnings"]

    (project / "dags" / "broken.py").write_text("def broken(:\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "broken")
    invalid = deploy(project, check=False)
    assert invalid.returncode == 2 and "dags/broken.py:1" in invalid.stderr
    (project / "dags" / "broken.py").unlink()
    (project / "tests" / "dags" / "test_dags.py").write_text("def test_fails():\n    assert False\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "failing test")
    failing = deploy(project, "--pytest", check=False)
    assert failing.returncode == 2 and "tests failed in the sandbox" in failing.stderr
    (project / "tests" / "dags" / "test_dags.py").write_text("def test_passes():\n    assert True\n")
    git(project, "commit", "-qam", "passing test")
    assert deploy(project, "--pytest")["manifest_digest"]
    assert len(json.loads(run_cli(["history", project, "--json"]).stdout)) == 3, "refused deploys leave no record"


def test_dags_only_deploy_replaces_the_dag_layer(tmp_path, airbuild_cache, registry):
    target = f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: [current]\n")
    first = deploy(project)
    (project / "include" / "data.csv").write_text("a,b\n9,9\n")  # not a DAG: stays as deployed
    (project / "dags" / "etl.py").write_text("# new DAG code\n")
    dags = deploy(project, "--dags")
    assert dags["dags_only"] and dags["blobs_uploaded"] == 2
    before = skopeo_inspect(f"{target}@{first['manifest_digest']}")["Layers"]
    after = skopeo_inspect(f"{target}:current")["Layers"]
    assert len(after) == len(before) and after[:-1] == before[:-1] and after[-1] != before[-1]
    copied = tmp_path / "copied"
    run([tool("skopeo"), "copy", "--quiet", "--src-tls-verify=false", f"docker://{target}:{dags['tag']}",
         f"oci:{copied}:x"])
    config_digest = json.loads((copied / "blobs" / "sha256" / dags["manifest_digest"][7:]).read_text())["config"]["digest"]
    config = json.loads((copied / "blobs" / "sha256" / config_digest[7:]).read_text())
    import gzip
    import io
    import tarfile

    dag_layer = (copied / "blobs" / "sha256" / after[-1][7:]).read_bytes()
    assert config["rootfs"]["diff_ids"][-1] == "sha256:" + hashlib.sha256(gzip.decompress(dag_layer)).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(dag_layer)) as archive:
        assert archive.extractfile("usr/local/airflow/dags/etl.py").read() == b"# new DAG code\n"


def test_dags_only_needs_a_current_image(tmp_path, airbuild_cache, registry):
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {registry}/{repo_name()}\n")
    proc = deploy(project, "--dags", check=False)
    assert proc.returncode == 2 and "run a full deploy first" in proc.stderr


# -- faults -------------------------------------------------------------------------------------

def store_is_sound(cache: Path) -> None:
    for blob in (cache / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob.name}"
    assert list((cache / "tmp").iterdir()) == [], "no temp files left behind"


def test_push_survives_dropped_connections_and_500s(tmp_path, airbuild_cache, start_registry):
    upstream = start_registry()
    faults = {("PATCH", 2): "500", ("PATCH", 4): "drop-request", ("PATCH", 6): "drop-response",
              ("PUT", 1): "drop-response", ("PUT", 3): "500", ("HEAD", 2): "500", ("POST", 3): "drop-request",
              ("HEAD", 5): "429"}
    proxy = FaultProxy(upstream.address, lambda request: faults.get((request.method, request.n), "pass"))
    try:
        target = f"{proxy.address}/{repo_name()}"
        project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n", big_include=600_000)
        env = {"AIRBUILD_UPLOAD_CHUNK_BYTES": str(128 * 1024)}
        result = deploy(project, env=env)
        injected = [entry for entry in proxy.log if entry[2] != "pass"]
        assert len(injected) == len(faults), injected
        assert sum(1 for m, _, _ in proxy.log if m == "PATCH") >= 5, "the big layer went up in chunks"
    finally:
        proxy.stop()
    info = skopeo_inspect(f"{upstream.address}/{target.split('/', 1)[1]}:{result['tag']}")
    assert info["Digest"] == result["manifest_digest"]
    copied = tmp_path / "copied"  # skopeo checks every blob's digest as it copies
    run([tool("skopeo"), "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{upstream.address}/{target.split('/', 1)[1]}:{result['tag']}", f"oci:{copied}:x"])
    store_is_sound(airbuild_cache)


def test_a_registry_that_keeps_failing_gives_a_clear_error_and_no_tag(tmp_path, airbuild_cache, start_registry):
    upstream = start_registry()
    proxy = FaultProxy(upstream.address, lambda request: "500" if request.method == "PATCH" else "pass")
    repo = repo_name()
    try:
        project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {proxy.address}/{repo}\n",
                                      big_include=300_000)
        proc = deploy(project, env={"AIRBUILD_UPLOAD_CHUNK_BYTES": str(64 * 1024), "AIRBUILD_REGISTRY_RETRIES": "3"},
                      check=False)
    finally:
        proxy.stop()
    assert proc.returncode == 1
    assert proxy.address in proc.stderr and "HTTP 500" in proc.stderr and "injected fault" in proc.stderr
    assert "gave up after 3 attempts" in proc.stderr and "uploading blob sha256:" in proc.stderr
    built = json.loads((project / ".airbuild" / "build.json").read_text())
    tags = run([tool("skopeo"), "list-tags", "--tls-verify=false", f"docker://{upstream.address}/{repo}"], check=False)
    assert built["tag"] not in tags.stdout, "no tag points at a partial image"
    by_digest = run([tool("skopeo"), "inspect", "--tls-verify=false",
                     f"docker://{upstream.address}/{repo}@{built['manifest_digest']}"], check=False)
    assert by_digest.returncode != 0
    assert run_cli(["history", project, "--json"]).stdout.strip() == "[]", "a failed deploy is not recorded"
    store_is_sound(airbuild_cache)


def test_unreachable_registry(tmp_path, airbuild_cache):
    from tests.registry_servers import free_port

    address = f"127.0.0.1:{free_port()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {address}/x\n")
    proc = deploy(project, env={"AIRBUILD_REGISTRY_RETRIES": "2"}, check=False)
    assert proc.returncode == 1 and address in proc.stderr and "gave up after 2 attempts" in proc.stderr
    assert json.loads(proc.stdout)["exit_code"] == 1


def test_an_unchanged_project_deploys_without_building_again(tmp_path, airbuild_cache, registry):
    """A deploy of a project nothing changed in since its last deploy takes the image the no-op stamp proves
    current (no build runs, so its record is not written again) and the SBOMs the store kept for that image;
    after an edit it builds again."""
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {registry}/{repo_name()}\n")
    first = deploy(project)
    record = project / ".airbuild" / "build.json"
    written = record.stat().st_mtime_ns
    second = deploy(project, "--target", "prod")
    assert second["manifest_digest"] == first["manifest_digest"]
    assert record.stat().st_mtime_ns == written, "no build ran"
    assert second["attestations"][:2] == first["attestations"][:2], "the same SBOMs"
    assert len(list((airbuild_cache / "sboms").glob("*.json"))) == 1, "written once, then read from the store"

    (project / "dags" / "etl.py").write_text((project / "dags" / "etl.py").read_text() + "# one edit\n")
    third = deploy(project)
    assert third["manifest_digest"] != first["manifest_digest"] and record.stat().st_mtime_ns != written
    assert len(list((airbuild_cache / "sboms").glob("*.json"))) == 2
