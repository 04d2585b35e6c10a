"""The `dags` rule splits many DAG files into several layers: an edit rebuilds one, the digest stays a
function of the inputs, and deploys (to a registry with --dags, to Astro with its DAG bundle) handle them."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

from tests.helpers import run_cli
from tests.projects import make_project, set_age
from tests.test_astro_deploy import astro, bundle_entries, deploy as astro_deploy, env_for, image_history, \
    new_deployment  # noqa: F401  (astro: the fixture)
from tests.test_bases import tiny_rootfs
from tests.test_deploy import deploy, make_deploy_project, repo_name, skopeo_inspect


def add_dags(project: Path, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        path = project / "dags" / f"team_{n % 7}" / f"dag_{n:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"DAG_ID = 'dag_{n:04d}'\nROWS = {n * 37 % 1000}\n")


def build(project: Path, env: dict | None = None) -> dict:
    return json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)


def dag_parts(result: dict) -> list[dict]:
    return [layer for layer in result["layers"] if layer["rule"].startswith("dags:")]


def layer_members(layout: Path, digest: str) -> list[str]:
    data = gzip.decompress((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [m.name for m in archive.getmembers() if not m.isdir()]


def split_project(tmp_path: Path, dags: int) -> Path:
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    add_dags(project, dags)
    set_age(tmp_path, 3600)
    return project


def test_an_edit_rebuilds_one_part_and_builds_what_a_fresh_store_builds(tmp_path, airbuild_cache):
    project = split_project(tmp_path, 900)  # 903 DAG files: four parts
    first = build(project)
    parts = dag_parts(first)
    assert [p["rule"] for p in parts] == [f"dags:{n}-of-4" for n in range(1, 5)]
    layout = Path(first["oci_layout"])
    files = [name for p in parts for name in layer_members(layout, p["digest"])]
    assert len(files) == len(set(files)) == 903, "every DAG file in exactly one part"

    (project / "dags" / "team_3" / "dag_0010.py").write_text("DAG_ID = 'edited'\n")
    edited = build(project)
    rebuilt = [layer["rule"] for layer in edited["layers"] if not layer["cached"]]
    assert len(rebuilt) == 1 and rebuilt[0].startswith("dags:"), rebuilt
    assert edited["manifest_digest"] != first["manifest_digest"]

    fresh = tmp_path / "elsewhere" / "p"  # the same name: the image's default name is the directory's
    shutil.copytree(project, fresh, symlinks=True, ignore=shutil.ignore_patterns(".airbuild"))
    shutil.copy(tmp_path / "rootfs.tar.gz", tmp_path / "elsewhere" / "rootfs.tar.gz")
    store = tmp_path / "fresh-store"
    again = build(fresh, env={"AIRBUILD_CACHE_DIR": str(store)})
    assert [layer["diff_id"] for layer in again["layers"]] == [layer["diff_id"] for layer in edited["layers"]]
    assert again["manifest_digest"] == edited["manifest_digest"], "the digest is a function of the inputs"
    assert all(not layer["cached"] for layer in dag_parts(again))


def test_a_few_dags_keep_one_layer(tmp_path, airbuild_cache):
    project = split_project(tmp_path, 10)
    assert [layer["rule"] for layer in build(project)["layers"] if layer["rule"].startswith("dags")] == ["dags"]


def test_dags_only_deploy_replaces_every_part(tmp_path, airbuild_cache, registry):
    target = f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: [current]\n")
    add_dags(project, 600)  # with the project's four: three parts
    set_age(project, 3600)
    first = deploy(project, "--no-validate")
    add_dags(project, 300, start=600)  # four parts now: another number of layers than the image has
    dags = deploy(project, "--dags", "--no-validate")
    assert dags["dags_only"]
    built = build(project)  # the same tree built in full: the spliced image is that image
    assert dags["manifest_digest"] == built["manifest_digest"]
    history = image_history(f"{target}:current")
    assert sum(h.startswith("airbuild dags:") for h in history) == 4
    before = skopeo_inspect(f"{target}@{first['manifest_digest']}")["Layers"]
    after = skopeo_inspect(f"{target}:current")["Layers"]
    assert after[:-4] == before[:-3], "the layers under the DAGs as deployed"


def test_astro_bundle_holds_every_part(tmp_path, airbuild_cache, astro):  # noqa: F811
    _, project = new_deployment(astro, tmp_path, "clsplitdags01")
    add_dags(project, 600)
    set_age(project, 3600)
    full = astro_deploy(project, env_for(astro), "--no-validate")
    history = image_history(f"{astro.registry}/{astro.deployments['clsplitdags01'].repository}:"
                            f"{full['astro']['image_tag']}")
    assert not any(h.startswith("airbuild dags:") for h in history), "no part of the DAGs in the image"
    names = [e.name for e in bundle_entries(astro.bundles[full["astro"]["dag_tarball_version"]])]
    assert names == sorted(names) and len(names) == 605 and "dags/team_3/dag_0010.py" in names
    only = astro_deploy(project, env_for(astro), "--dags", "--no-validate")
    assert astro.bundles[only["astro"]["dag_tarball_version"]] == astro.bundles[full["astro"]["dag_tarball_version"]]
