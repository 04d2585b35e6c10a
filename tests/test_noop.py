"""The no-op shortcut answers an unchanged project from its stamp, and never when anything changed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.projects import make_project, set_age
from tests.test_bases import tiny_rootfs


def build(project: Path, *extra: str, env: dict | None = None) -> dict:
    return json.loads(run_cli(["build", project, "--json", *extra], env=env).stdout)


@pytest.fixture
def project(tmp_path: Path, airbuild_cache) -> Path:
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    set_age(tmp_path, 3600)
    build(project)
    assert (project / ".airbuild" / "stamp.json").exists(), "inputs older than the racy margin: stamp written"
    return project


def test_unchanged_project_is_answered_from_the_stamp(project):
    before = json.loads((project / ".airbuild" / "build.json").read_text())
    again = build(project)
    assert again["manifest_digest"] == before["manifest_digest"]
    assert all(l["cached"] and l["files_read"] == 0 for l in again["layers"])
    record = project / ".airbuild" / "build.json"
    mtime = record.stat().st_mtime_ns
    build(project)
    assert record.stat().st_mtime_ns == mtime, "the shortcut writes nothing"


def _age(path: Path) -> None:
    then = time.time() - 3600
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.mark.parametrize("change", ["dag", "dockerignore", "manifest", "epoch", "blob", "base", "new_file"])
def test_any_change_takes_the_full_path(project, change, tmp_path):
    before = build(project)
    env = None
    expect_new_digest = True
    if change == "dag":
        (project / "dags" / "etl.py").write_text("# edited\n")
        _age(project / "dags" / "etl.py")  # same-looking age: the content and ctime still differ
    elif change == "dockerignore":
        (project / ".dockerignore").write_text("docs/\n*.tmp\n!keep.tmp\ninclude/data.csv\n")
    elif change == "manifest":
        (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\nworkdir: /opt/airflow\n")
    elif change == "epoch":
        env = {"SOURCE_DATE_EPOCH": "86400"}
    elif change == "blob":
        layer = before["layers"][-1]["digest"].removeprefix("sha256:")
        (project / ".airbuild" / "image" / "blobs" / "sha256" / layer).unlink()
        expect_new_digest = False
    elif change == "base":
        tiny_rootfs(tmp_path / "rootfs.tar.gz")  # same bytes, rewritten: stat changes, digest does not
        expect_new_digest = False
    elif change == "new_file":
        (project / "include" / "new.txt").write_text("new\n")
    after = build(project, env=env)
    assert after["duration_s"] > 0
    assert (after["manifest_digest"] != before["manifest_digest"]) is expect_new_digest
    layout_blob = Path(after["oci_layout"]) / "blobs" / "sha256" / after["layers"][-1]["digest"].removeprefix("sha256:")
    assert layout_blob.exists(), "the full path restores the layout"
    if change == "blob":
        assert all(l["cached"] for l in after["layers"]), "the store still had the layer: only the layout is rewritten"
