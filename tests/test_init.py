"""`airbuild init`: a project that builds, parses and tests as written, and that overwrites nothing."""

from __future__ import annotations

import json

from tests.helpers import run_cli
from tests.test_validate import TEST_STORE

ASTRO_DOCKERIGNORE = ["astro", ".git", ".env", "airflow_settings.yaml", "logs/", ".venv", "airflow.db", "airflow.cfg"]


def test_init_builds_parses_and_tests_out_of_the_box(tmp_path, docker_client):
    project = tmp_path / "new-project"
    made = json.loads(run_cli(["init", project, "--json"]).stdout)
    assert made["name"] == "new-project"
    for path in made["files"]:
        assert (project / path).is_file(), path
    assert (project / ".dockerignore").read_text().split() == ASTRO_DOCKERIGNORE
    assert "name: new-project" in (project / "astro.yaml").read_text()
    assert (project / ".astro" / "config.yaml").read_text() == "project:\n  name: new-project\n"

    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    archive = tmp_path / "image.tar"
    built = json.loads(run_cli(["build", "--archive", archive, "--json"], cwd=project, env=env).stdout)
    report = built["validation"]
    assert report["status"] == "ok" and [f["file"] for f in report["files"]] == ["dags/example_etl.py"]
    assert report["files"][0]["dags"] == [{"dag_id": "example_etl", "tasks": 3}]
    tested = run_cli(["test"], cwd=project, env=env)
    assert "3 passed" in tested.stdout

    # The Astro CLI's parse check runs in the image as `astro dev parse` runs it, and catches a broken DAG.
    ref = f"new-project:{built['tag']}"
    docker_client("load", "-i", archive)
    try:
        shown = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                              "python3 -m pytest -q -p no:cacheprovider .astro/test_dag_integrity_default.py; "
                              "printf 'from airflow.sdk import DAG\\nimport not_installed\\n' > dags/broken.py; "
                              "python3 -m pytest -q -p no:cacheprovider .astro/test_dag_integrity_default.py",
                              check=False).stdout
    finally:
        docker_client("rmi", "-f", ref, check=False)
    assert "1 passed" in shown
    assert "FAILED .astro/test_dag_integrity_default.py::test_file_imports[dags/broken.py]" in shown
    assert "No module named 'not_installed'" in shown


def test_init_overwrites_nothing(tmp_path):
    project = tmp_path / "p"
    run_cli(["init", project])
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    again = run_cli(["init", project], check=False)
    assert again.returncode == 2 and "overwrites nothing" in again.stderr
    assert "Dockerfile" in again.stderr and ".astro/config.yaml" in again.stderr
    assert {path: path.read_bytes() for path in project.rglob("*") if path.is_file()} == before

    partial = tmp_path / "has-a-dockerfile"
    partial.mkdir()
    (partial / "Dockerfile").write_text("FROM scratch\n")
    refused = run_cli(["init", partial], check=False)
    assert refused.returncode == 2 and f"{partial} already has Dockerfile:" in refused.stderr
    assert [p.name for p in partial.iterdir()] == ["Dockerfile"], "nothing written"
