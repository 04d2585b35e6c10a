"""Commands run below a project work on it (the nearest directory up that is one); a named project wins."""

from __future__ import annotations

import json

from tests.helpers import run_cli
from tests.projects import make_project
from tests.test_bases import tiny_rootfs


def test_commands_find_the_project_from_any_directory_below_it(tmp_path, airbuild_cache):
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    base = f"rootfs:{tmp_path / 'rootfs.tar.gz'}"
    project = make_project(tmp_path / "p")
    built = json.loads(run_cli(["build", "--base", base, "--json"], cwd=project / "dags" / "reports").stdout)
    assert built["oci_layout"] == str(project / ".airbuild" / "image")
    assert not (project / "dags" / "reports" / ".airbuild").exists()

    planned = json.loads(run_cli(["plan", "--base", base, "--json"], cwd=project / "include" / "nested").stdout)
    assert all(layer["cached"] for layer in planned["layers"])
    inspected = json.loads(run_cli(["inspect", "--json"], cwd=project / "dags").stdout)
    assert inspected["manifest_digest"] == built["manifest_digest"]
    assert run_cli(["history"], cwd=project / "plugins").stdout.strip() == "no deploys recorded"

    # Only a manifest marks this one (no Dockerfile): still found, and a named project wins over the one here.
    other = tmp_path / "other"
    (other / "dags").mkdir(parents=True)
    (other / "dags" / "one.py").write_text("# a DAG\n")
    (other / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    found = json.loads(run_cli(["build", "--json"], cwd=other / "dags").stdout)
    assert found["oci_layout"] == str(other / ".airbuild" / "image")
    named = json.loads(run_cli(["plan", other, "--json"], cwd=project / "dags").stdout)
    assert named["image_name"] == "other"


def test_a_directory_in_no_project_is_a_clear_error(tmp_path, airbuild_cache):
    lost = tmp_path / "not-a-project" / "dags"  # a dags/ alone, with no Dockerfile or astro.yaml beside it
    lost.mkdir(parents=True)
    for command in (["build"], ["parse"], ["plan", "--json"], ["history"], ["inspect"]):
        proc = run_cli(command, cwd=lost, check=False)
        assert proc.returncode == 2, command
        assert f"{lost} is not in an Airflow project" in proc.stderr
        assert "Traceback" not in proc.stderr
