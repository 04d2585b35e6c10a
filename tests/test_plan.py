"""`airbuild plan` is read-only: manifests and configs at most, never a layer blob, a resolution or a build.

Where a key cannot be known without one of those, the plan says so for that rule (and the
layers above it), and the build that follows does the work.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli
from tests.projects import make_project
from tests.test_python import DEAD_PROXY
from tests.test_registry import app_project, base_image, push_layout


def plan(project: Path, *extra: str, env: dict | None = None) -> dict:
    return json.loads(run_cli(["plan", project, "--json", *extra], env=env).stdout)


def blobs(store: Path) -> set[str]:
    return {"sha256:" + p.name for p in (store / "blobs" / "sha256").glob("*")} if (store / "blobs").is_dir() else set()


def test_plan_fetches_no_base_layer_and_says_which_keys_need_one(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    layout, base = base_image(tmp_path, "base")  # USER astro: project files are owned by a name in /etc/passwd
    push_layout(layout, base["tag"], f"{registry.address}/bases/tiny:v1")
    project = app_project(tmp_path, f"{registry.address}/bases/tiny:v1")
    base_layers = [l["digest"] for l in base["layers"]]
    store = tmp_path / "plan-store"
    env = {"AIRBUILD_CACHE_DIR": str(store)}

    first = plan(project, env=env)
    assert not set(base_layers) & blobs(store), "no layer blob of the base was downloaded"
    assert base["manifest_digest"] in blobs(store), "its manifest was"
    assert [l["digest"] for l in first["layers"] if l["rule"] == "base"] == base_layers, "known by digest"
    rows = {l["rule"]: l for l in first["layers"]}
    for rule in ("project-files", "dags"):
        assert rows[rule]["key"] is None and not rows[rule]["cached"]
        assert "/etc/passwd" in rows[rule]["reason"], rows[rule]["reason"]
    table = run_cli(["plan", project], env=env).stdout
    assert "unknown   dags" in table and "a plan cannot know" in table
    assert not (project / "astro.lock").exists(), "a plan writes no lock"

    # A build fetches the layer and makes every layer; the plan after it knows every key.
    run_cli(["build", project, "--no-validate"], env=env)
    after = plan(project, env=env)
    assert all(l["cached"] for l in after["layers"])
    assert all(l["key"] for l in after["layers"] if l["rule"] != "base")


def test_plan_resolves_nothing_the_lock_does_not_pin(tmp_path, debian_rootfs, shared_store):
    project = make_project(tmp_path / "p")
    (project / "requirements.txt").write_text("tabulate==0.9.0\n")
    env = {"AIRBUILD_CACHE_DIR": str(shared_store)}
    run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate"], env=env)
    lock = (project / "astro.lock").read_bytes()

    (project / "requirements.txt").write_text("tabulate==0.9.0\ntoolz==1.0.0\n")
    dead_index = {**env, **DEAD_PROXY}  # a resolution would fail loudly
    result = plan(project, "--base", f"rootfs:{debian_rootfs}", env=dead_index)
    rows = {l["rule"]: l for l in result["layers"]}
    assert rows["python-requirements"]["key"] is None
    assert "requirements.txt is not pinned by the lock" in rows["python-requirements"]["reason"]
    assert rows["dags"]["key"] is None and "`python-requirements` layer below" in rows["dags"]["reason"]
    assert rows["base"]["cached"]
    assert (project / "astro.lock").read_bytes() == lock, "the lock is untouched"


def test_plan_of_an_unbuilt_debian_base_says_so(tmp_path, airbuild_cache):
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  debian:\n    suite: bookworm\n    packages: [python3]\n")
    result = plan(project)
    assert [l["rule"] for l in result["layers"]] == ["base"]
    assert result["layers"][0]["key"] is None and "base.debian is not pinned" in result["layers"][0]["reason"]
    assert not blobs(airbuild_cache) and not (airbuild_cache / "debs").exists(), "no index, no .deb, no base"
