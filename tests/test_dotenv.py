"""The project's `.env` (or `-e FILE`) reaches the DAGs' environment and nothing else."""

from __future__ import annotations

import gzip
import json
import uuid

from tests.helpers import run_cli
from tests.test_validate import AIRFLOW_3, TEST_STORE, project_with

SECRET = "dotenv-secret-" + uuid.uuid4().hex[:8]
READER = '''from datetime import datetime
import os
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

print("the password is", os.environ["DB_PASSWORD"])
assert os.environ["BUCKET"] == "landing", os.environ["BUCKET"]
assert os.environ["QUOTED"] == '"kept as docker keeps it"', os.environ["QUOTED"]
with DAG("reads_dotenv", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="a")
'''


def test_dotenv_values_reach_the_dags_and_no_output_layer_or_lock(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, [])
    (project / "dags" / "reads_dotenv.py").write_text(READER)
    (project / ".env").write_text(f"# comment\nBUCKET=landing\nDB_PASSWORD={SECRET}\n"
                                  'QUOTED="kept as docker keeps it"\nnot a valid line\n')
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE), "AIRFLOW_VAR_RUN": uuid.uuid4().hex}
    junit = tmp_path / "report.xml"
    parsed = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--json", "--junit", junit], env=env,
                     check=False)
    report = json.loads(parsed.stdout)
    assert parsed.returncode == 0, parsed.stdout[-3000:]
    assert report["files"][0]["dags"] == [{"dag_id": "reads_dotenv", "tasks": 1}]
    assert "the password is ***" in report["files"][0]["stdout"]
    assert any(".env:5" in w and "line ignored" in w for w in report["warnings"]), report["warnings"]
    table = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}"], env=env)
    assert ".env:5" in table.stdout

    # Another file instead of .env: the DAG sees its values (here BUCKET differs, so the file fails),
    # and the message that carries one shows it masked, as every value of an env file is.
    other = tmp_path / "ci.env"
    other.write_text(f"BUCKET=elsewhere\nDB_PASSWORD={SECRET}\nQUOTED=x\n")
    failing = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--json", "-e", other], env=env,
                      check=False)
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["files"][0]["errors"][0]["message"] == "AssertionError: ***"
    missing = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "-e", tmp_path / "nope.env"],
                      env=env, check=False)
    assert missing.returncode == 2 and "no such environment file" in missing.stderr

    built = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json"], env=env)
    outputs = {"parse --json": parsed.stdout, "parse stderr": parsed.stderr, "table": table.stdout,
               "junit": junit.read_text(), "build --json": built.stdout, "-e": failing.stdout,
               "astro.lock": (project / "astro.lock").read_text()}
    for path in (project / ".airbuild").rglob("*"):
        if path.is_file() and "blobs" not in path.parts:
            outputs[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for blob in (project / ".airbuild" / "image" / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        outputs[f"blob {blob.name[:12]}"] = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode(
            "utf-8", "replace")
    leaks = [where for where, text in outputs.items() if SECRET in text]
    assert not leaks, f"the .env secret is in {leaks}"
