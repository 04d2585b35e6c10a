"""The bundled quickstart, built as scripts/quickstart builds it, runs its DAG in Docker with no network."""

from __future__ import annotations

import json
import shutil

from tests.helpers import REPO, run_cli
from tests.test_validate import TEST_STORE


def test_the_quickstart_image_runs_its_dag(tmp_path, docker_client):
    project = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", project, ignore=shutil.ignore_patterns(".airbuild", "astro.lock"))
    archive = tmp_path / "image.tar"
    result = json.loads(run_cli(["build", project, "--archive", archive, "--json"],
                                env={"AIRBUILD_CACHE_DIR": str(TEST_STORE)}).stdout)
    assert result["validation"]["status"] == "ok"
    config = json.loads(run_cli(["inspect", result["oci_layout"], "--json"]).stdout)["config"]
    assert {"AIRFLOW_HOME=/usr/local/airflow", "PYTHONPATH=/usr/local/airflow"} <= set(config["Env"])

    ref = f"quickstart:{result['tag']}"
    docker_client("load", "-i", archive)
    try:
        # Airflow needs its database before a run, as the Astro runtime's entrypoint migrates it on start.
        run = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                            "airflow db migrate > /dev/null && airflow dags test example_etl", check=False)
    finally:
        docker_client("rmi", "-f", ref, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "sum of squares: 30" in output
    finished = [line for line in output.splitlines() if "DagRun Finished: dag_id=example_etl" in line]
    assert finished and "state=success" in finished[-1], output[-3000:]
