"""The shared build cache in a registry repository: two stores share it, bad entries are refused, an
unreachable cache is a warning, a read-only cache is never written. Against the loopback registry."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
import uuid
from pathlib import Path

from tests.helpers import rule_layers, run_cli
from tests.projects import make_project
from tests.registry_servers import PASSWORD, USER
from tests.test_bases import tiny_rootfs
from tests.test_registry import tls_registry  # noqa: F401  (a fixture)
from tests.package_index import PackageIndex


def build(project: Path, base: Path, store: Path, *extra: str, check: bool = True):
    proc = run_cli(["build", project, "--base", f"rootfs:{base}", "--no-validate", "--json", *extra],
                   env={"AIRBUILD_CACHE_DIR": str(store)}, check=check)
    return json.loads(proc.stdout) if check else proc


def own(result: dict) -> list[dict]:
    return [layer for layer in result["layers"] if layer["rule"] != "base"]


def registry_json(registry: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{registry}{path}", timeout=10) as response:
        return json.loads(response.read())


def setup(tmp_path: Path, registry: str) -> tuple[Path, Path, str]:
    project = make_project(tmp_path / "p")
    base = tmp_path / "rootfs.tar.gz"
    tiny_rootfs(base)
    return project, base, f"{registry}/airbuild-cache-{uuid.uuid4().hex[:8]}"


def test_a_second_store_builds_nothing_and_gets_the_same_image(tmp_path, registry):
    project, base, repo = setup(tmp_path, registry)
    first = build(project, base, tmp_path / "store-a", "--cache-repo", repo)
    assert {layer["source"] for layer in own(first)} == {"built"}
    assert first["cache"]["published"] == len(own(first)) and first["cache"]["uploaded_bytes"] > 0
    tags = registry_json(registry, f"/v2/{repo.split('/', 1)[1]}/tags/list")["tags"]
    assert {t.split("-")[1] for t in tags} == {layer["key"] for layer in own(first)}

    planned = json.loads(run_cli(["plan", project, "--base", f"rootfs:{base}", "--cache-repo", repo, "--json"],
                                 env={"AIRBUILD_CACHE_DIR": str(tmp_path / "store-b")}).stdout)
    assert {layer["source"] for layer in own(planned)} == {"remote"}, "a plan asks the cache, downloads nothing"
    assert not list((tmp_path / "store-b" / "layers").glob("*.json"))
    second = build(project, base, tmp_path / "store-b", "--cache-repo", repo)
    assert second["manifest_digest"] == first["manifest_digest"]
    assert all(layer["cached"] and layer["source"] == "remote" for layer in own(second))
    assert second["cache"]["hits"] == len(own(second)) and second["cache"]["published"] == 0
    assert second["cache"]["downloaded_bytes"] == sum(layer["size"] for layer in own(first))
    table = run_cli(["build", project, "--base", f"rootfs:{base}", "--no-validate", "--cache-repo", repo],
                    env={"AIRBUILD_CACHE_DIR": str(tmp_path / "store-c")}).stdout
    assert "remote    dags" in table and "layer(s) fetched" in table

    # The third store has them locally now: a no-op asks nothing of the cache; after an edit, the
    # unchanged layers are local hits and only the new DAG layer is built (and written to the cache).
    third = build(project, base, tmp_path / "store-c", "--cache-repo", repo)
    assert {layer["source"] for layer in own(third)} == {"local"} and third["cache"] is None
    (project / "dags" / "etl.py").write_text("# edited\n")
    edited = build(project, base, tmp_path / "store-c", "--cache-repo", repo)
    assert {layer["rule"]: layer["source"] for layer in own(edited)} == {"project-files": "local", "dags": "built"}
    assert edited["cache"]["hits"] == 0 and edited["cache"]["misses"] == 1 and edited["cache"]["published"] == 1


def test_a_poisoned_entry_is_rejected_and_the_layer_built_here(tmp_path, registry):
    project, base, repo = setup(tmp_path, registry)
    first = build(project, base, tmp_path / "store-a", "--cache-repo", repo)
    dags = next(layer for layer in own(first) if layer["rule"] == "dags")
    files = next(layer for layer in own(first) if layer["rule"] == "project-files")
    # Someone rewrites the dags entry to name the project-files blob, keeping the dags layer's diff_id.
    name = repo.split("/", 1)[1]
    tag = next(t for t in registry_json(registry, f"/v2/{name}/tags/list")["tags"] if dags["key"] in t)
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{tag}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        manifest = json.loads(response.read())
    manifest["layers"][0].update(digest=files["digest"], size=files["size"])
    body = json.dumps(manifest).encode()
    put = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{tag}", data=body, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(put, timeout=10).close()

    planned = json.loads(run_cli(["plan", project, "--base", f"rootfs:{base}", "--cache-repo", repo, "--json"],
                                 env={"AIRBUILD_CACHE_DIR": str(tmp_path / "store-b")}).stdout)
    assert {layer["source"] for layer in own(planned)} == {"remote"}, "a plan asks the cache, downloads nothing"
    assert not list((tmp_path / "store-b" / "layers").glob("*.json"))
    second = build(project, base, tmp_path / "store-b", "--cache-repo", repo)
    assert second["manifest_digest"] == first["manifest_digest"], "the poisoned entry did not reach the image"
    sources = {layer["rule"]: layer["source"] for layer in own(second)}
    assert sources["dags"] == "built" and sources["project-files"] == "remote"
    assert second["cache"]["rejected"] == 1
    assert any("rejected" in note and dags["key"][:12] in note for note in second["notes"])


def test_an_unreachable_cache_is_a_warning_unless_required(tmp_path):
    project, base, _ = setup(tmp_path, "127.0.0.1:9")
    result = build(project, base, tmp_path / "store", "--cache-repo", "127.0.0.1:9/cache")
    assert {layer["source"] for layer in own(result)} == {"built"}
    assert result["cache"]["reachable"] is False
    assert any("127.0.0.1:9/cache is not usable" in note for note in result["notes"])
    (project / "dags" / "new.py").write_text("# another\n")
    proc = build(project, base, tmp_path / "store", "--cache-repo", "127.0.0.1:9/cache", "--cache-required",
                 check=False)
    assert proc.returncode == 1 and "--cache-required" in proc.stderr and "Traceback" not in proc.stderr


def test_a_read_only_cache_is_used_but_never_written(tmp_path, registry):
    project, base, repo = setup(tmp_path, registry)
    (project / ".dockerignore").write_text("astro.yaml\n")  # the manifest edit below changes no layer
    build(project, base, tmp_path / "store-a", "--cache-repo", repo)
    name = repo.split("/", 1)[1]
    before = set(registry_json(registry, f"/v2/{name}/tags/list")["tags"])
    (project / "astro.yaml").write_text(f"cache:\n  repo: {repo}\n  mode: read\n")
    (project / "dags" / "etl.py").write_text("# edited\n")
    result = build(project, base, tmp_path / "store-b")
    sources = {layer["rule"]: layer["source"] for layer in own(result)}
    assert sources["project-files"] == "remote" and sources["dags"] == "built"
    assert result["cache"]["published"] == 0
    assert set(registry_json(registry, f"/v2/{name}/tags/list")["tags"]) == before


def test_cache_settings_are_checked(tmp_path):
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("cache:\n  repo: host/repo:tag\n")
    proc = run_cli(["build", project, "--json"], check=False)
    assert proc.returncode == 2 and "cache.repo" in proc.stderr
    (project / "astro.yaml").write_text("cache:\n  repo: host/repo\n  mode: write-only\n")
    proc = run_cli(["build", project, "--json"], check=False)
    assert proc.returncode == 2 and "cache.mode" in proc.stderr


def test_dag_results_are_shared_so_no_runner_imports_an_unchanged_dag_again(tmp_path, registry, debian_rootfs):
    """Runner A (a warm store) fills the cache with its layers and its DAG results; runner B (an empty
    store) builds the same commit importing nothing, then after a one-file edit imports that file only."""
    from tests.test_validate import AIRFLOW_3, TEST_STORE, project_with

    project = project_with(tmp_path, AIRFLOW_3, ["good.py", "duplicate_task.py"])
    (project / "dags" / "second.py").write_text((project / "dags" / "good.py").read_text().replace(
        'DAG("good"', 'DAG("second"'))
    repo = f"{registry}/airbuild-cache-{uuid.uuid4().hex[:8]}"
    a = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json", "--force", "--cache-repo", repo],
                env={"AIRBUILD_CACHE_DIR": str(TEST_STORE)})
    first = json.loads(a.stdout)
    assert first["cache"]["published"] == len(own(first)), "a warm runner fills the cache with what it lacks"
    assert first["cache"]["records_published"] >= 2

    b_store = tmp_path / "runner-b"
    second = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json", "--force",
                                 "--cache-repo", repo], env={"AIRBUILD_CACHE_DIR": str(b_store)}).stdout)
    assert second["manifest_digest"] == first["manifest_digest"]
    assert {layer["source"] for layer in own(second)} == {"remote"}
    assert second["validation"]["imported"] == 0 and all(f["cached"] for f in second["validation"]["files"])
    assert [f["errors"] for f in second["validation"]["files"]] == [f["errors"] for f in first["validation"]["files"]]

    (project / "dags" / "second.py").write_text((project / "dags" / "second.py").read_text() + "\n# edited\n")
    third = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json", "--force",
                                "--cache-repo", repo], env={"AIRBUILD_CACHE_DIR": str(b_store)}).stdout)
    assert third["validation"]["imported"] == 1
    assert {f["file"] for f in third["validation"]["files"] if not f["cached"]} == {"dags/second.py"}


def test_a_lock_whose_deb_url_is_gone_builds_from_the_cache(tmp_path, registry, debian_rootfs, shared_store):
    project = make_project(tmp_path / "p")
    (project / "packages.txt").write_text("jq\n")
    repo = f"{registry}/airbuild-cache-{uuid.uuid4().hex[:8]}"
    first = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json",
                                "--cache-repo", repo], env={"AIRBUILD_CACHE_DIR": str(shared_store)}).stdout)
    lock = json.loads((project / "astro.lock").read_text())
    debs = lock["debian"]["entries"]
    assert first["cache"]["inputs_published"] == len(debs) >= 2  # jq and its libraries
    for entry in debs:  # the archive dropped them since
        entry["url"] = "http://127.0.0.1:9/debian/pool/" + entry["url"].rsplit("/", 1)[1]
    (project / "astro.lock").write_text(json.dumps(lock, indent=2))
    # zstd layers: not in the cache, so runner B builds the layer and needs the .debs
    (project / "astro.yaml").write_text("compression:\n  codec: zstd\n")
    second = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json",
                                 "--locked", "--cache-repo", repo], env={"AIRBUILD_CACHE_DIR": str(tmp_path / "b")}).stdout)
    packages = next(layer for layer in own(second) if layer["rule"] == "system-packages")
    assert packages["source"] == "built" and second["cache"]["inputs_fetched"] == len(debs)
    without = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--locked"],
                      env={"AIRBUILD_CACHE_DIR": str(tmp_path / "c")}, check=False)
    assert without.returncode == 1 and "127.0.0.1:9" in without.stderr, "without the cache the lock cannot build"


def test_a_cache_behind_authentication_and_one_that_refuses_the_credentials(tmp_path, tls_registry):
    project, base, _ = setup(tmp_path, tls_registry.address)
    repo = f"{tls_registry.address}/team/airbuild-cache"
    creds = {"AIRBUILD_CA_BUNDLE": str(tls_registry.ca), "AIRBUILD_REGISTRY_HOST": tls_registry.address,
             "AIRBUILD_REGISTRY_USERNAME": USER, "AIRBUILD_REGISTRY_PASSWORD": PASSWORD}

    def build_with(store: str, env: dict) -> dict:
        return json.loads(run_cli(["build", project, "--base", f"rootfs:{base}", "--no-validate", "--json",
                                   "--cache-repo", repo], env={"AIRBUILD_CACHE_DIR": str(tmp_path / store),
                                                               **env}).stdout)

    first = build_with("a", creds)
    assert first["cache"]["published"] == len(own(first))
    second = build_with("b", creds)
    assert {layer["source"] for layer in own(second)} == {"remote"}
    refused = build_with("c", {**creds, "AIRBUILD_REGISTRY_PASSWORD": "wrong-password"})
    assert {layer["source"] for layer in own(refused)} == {"built"}
    assert refused["manifest_digest"] == first["manifest_digest"]
    assert any("is not usable" in note and "401" in note for note in refused["notes"])
    assert "wrong-password" not in json.dumps(refused)


def test_a_fresh_store_whose_python_layers_are_all_in_the_cache_downloads_no_wheel(tmp_path, registry,
                                                                                     debian_rootfs):
    """Which files each of the requirements' layers keeps is read from the wheels once, then kept by the lock in
    the shared cache too: a runner whose layers all come from the cache needs no wheel, and fetches none."""
    from tests.test_python import make_wheel

    names = ["alpha_tools", "beta_tools", "gamma_tools", "delta_tools", "epsilon_tools"]
    wheels = [make_wheel(name, "1.0.0") for name in names]
    index = PackageIndex(wheels)
    try:
        project = make_project(tmp_path / "a" / "p")
        (project / "requirements.txt").write_text("".join(f"{name.replace('_', '-')}==1.0.0\n" for name in names))
        (project / "astro.yaml").write_text(f"index_url: {index.url}\n")
        repo = f"{registry}/airbuild-cache-{uuid.uuid4().hex[:8]}"
        env = {"UV_CACHE_DIR": str(tmp_path / "uv")}
        first = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json",
                                    "--cache-repo", repo],
                                   env={**env, "AIRBUILD_CACHE_DIR": str(tmp_path / "a" / "store")}).stdout)
        python_layers = rule_layers(first, "python-requirements")
        assert len(python_layers) > 1 and {layer["source"] for layer in python_layers} == {"built"}
        assert first["cache"]["records_published"] >= 1, "the split into layers is written beside the layers"
        assert set(index.downloads) == {f"{name}-1.0.0-py3-none-any.whl" for name in names}

        index.downloads.clear()
        checkout = tmp_path / "b" / "p"  # another runner's checkout: the lock, no .airbuild/
        shutil.copytree(project, checkout, ignore=shutil.ignore_patterns(".airbuild"))
        store = tmp_path / "b" / "store"
        second = json.loads(run_cli(["build", checkout, "--base", f"rootfs:{debian_rootfs}", "--no-validate",
                                     "--json", "--locked", "--cache-repo", repo],
                                    env={**env, "AIRBUILD_CACHE_DIR": str(store)}).stdout)
        # (the project-files layer differs: the checkout has the astro.lock the first build wrote)
        assert [layer["digest"] for layer in rule_layers(second, "python-requirements")] == \
            [layer["digest"] for layer in python_layers]
        assert {layer["source"] for layer in rule_layers(second, "python-requirements")} == {"remote"}
        assert index.downloads == [], "a runner whose layers come from the cache fetches no wheel"
        digests = {hashlib.sha256(data).hexdigest() for _, data in wheels}
        assert not [p for p in (store / "blobs").rglob("*") if p.name in digests], "no wheel in the second store"
    finally:
        index.close()
