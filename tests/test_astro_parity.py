"""airbuild's DAG verdicts equal Airflow's own in the image airbuild built.

A corpus of Astro-style layouts (imports from include/, plugins/ and dags/ as packages of the
project root, a sibling module, a plugins/ package named like an installed distribution, a
connection the Dockerfile sets with ENV, a variable from .env, a file that really fails) is
parsed by `airbuild parse`, then the same image is loaded into dockerd and Airflow's DagBag,
as Airflow's DAG processor runs it (the DAG folder appended to sys.path), imports the same
folder with the image's environment and the project's .env. Every verdict must agree.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from tests.helpers import docker, run_cli
from tests.projects import make_project, set_age
from tests.test_validate import AIRFLOW_3, TEST_STORE

HEADER = "from datetime import datetime\nfrom airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"


def dag(dag_id: str, body: str = "") -> str:
    return (HEADER + body + f"\nwith DAG({dag_id!r}, start_date=datetime(2024, 1, 1), schedule=None):\n"
            "    EmptyOperator(task_id='a')\n")


CORPUS = {
    "include/__init__.py": "",
    "include/helpers.py": "def table_name():\n    return 'events'\n",
    "plugins/operators/__init__.py": "",
    "plugins/operators/custom.py": "from airflow.providers.standard.operators.empty import EmptyOperator\n\n"
                                   "class CustomOperator(EmptyOperator):\n    pass\n",
    # Named like the installed python-slugify: Airflow puts plugins/ after site-packages, so this loses.
    "plugins/slugify/__init__.py": "SHADOWED = True\n",
    "dags/common/__init__.py": "",
    "dags/common/defaults.py": "OWNER = 'data-team'\n",
    "dags/sibling_helper.py": "RETRIES = 2\n",
    "dags/from_include.py": dag("from_include", "from include.helpers import table_name\nassert table_name() == 'events'\n"),
    "dags/from_plugins.py": dag("from_plugins", "from plugins.operators.custom import CustomOperator\n"),
    "dags/from_dags_package.py": dag("from_dags_package", "from dags.common.defaults import OWNER\n"),
    "dags/from_sibling.py": dag("from_sibling", "import sibling_helper\nassert sibling_helper.RETRIES == 2\n"),
    "dags/shadow_named_package.py": dag("shadow_named_package", "from slugify import slugify\n"
                                                                "assert slugify('A b') == 'a-b'\n"),
    "dags/env_connection.py": dag("env_connection", "from airflow.sdk import BaseHook\n"
                                                    "conn = BaseHook.get_connection('from_env')\n"
                                                    "assert conn.host == 'db.example', conn.host\n"),
    "dags/dotenv_variable.py": dag("dotenv_variable", "import os\nassert os.environ['BUCKET'] == 'landing-zone'\n"),
    "dags/really_broken.py": dag("really_broken", "import not_installed_in_this_image\n"),
}
EXPECTED_FAILURES = {"dags/really_broken.py"}

# Airflow's own verdicts, inside the image: the DAG processor's DagBag over the DAG folder.
REFERENCE = r"""
import json, os, sys
from pathlib import Path
folder = os.path.join(os.environ["AIRFLOW_HOME"], "dags")
try:
    from airflow.dag_processing.dagbag import BundleDagBag
    bag = BundleDagBag(dag_folder=folder, bundle_path=Path(folder))
except ImportError:
    from airflow.models.dagbag import DagBag
    sys.path.append(folder)
    bag = DagBag(folder)
home = os.environ["AIRFLOW_HOME"]
relative = lambda path: os.path.relpath(os.path.join(folder, path), home)  # bundle-relative or absolute
print("VERDICTS" + json.dumps({
    "errors": sorted(relative(path) for path in bag.import_errors),
    "dags": sorted([relative(dag.fileloc), dag_id] for dag_id, dag in bag.dags.items())}))
"""


def corpus_project(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "corpus")
    shutil.rmtree(project / "dags")
    shutil.rmtree(project / "plugins")
    for rel, text in CORPUS.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (project / "Dockerfile").write_text(
        "FROM quay.io/astronomer/astro-runtime:12.1.0\n"
        "ENV AIRFLOW_HOME=/usr/local/airflow PYTHONPATH=/usr/local/airflow\n"
        "ENV AIRFLOW_CONN_FROM_ENV=postgres://loader:pw-from-dockerfile@db.example:5432/dw\n")
    (project / ".env").write_text(f"BUCKET=landing-zone\nRUN_ID={uuid.uuid4().hex}\n")
    (project / "requirements.txt").write_text(AIRFLOW_3)
    set_age(project, 3600)
    return project


def test_parse_verdicts_equal_airflows_own_in_the_built_image(tmp_path, debian_rootfs, docker_client):
    project = corpus_project(tmp_path)
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    proc = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--json"], env=env, check=False)
    report = json.loads(proc.stdout)
    assert "files" in report, proc.stderr[-3000:]
    ours = {"errors": sorted(f["file"] for f in report["files"] if f["errors"]),
            "dags": sorted([f["file"], d["dag_id"]] for f in report["files"] for d in f["dags"])}

    assert "python" in json.loads((project / "astro.lock").read_text()), "parse pins what it resolved, as build does"
    again = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--json", "--locked"], env=env, check=False)
    assert again.returncode == 1 and json.loads(again.stdout)["files"] == report["files"] or \
        all(f["cached"] for f in json.loads(again.stdout)["files"]), again.stderr[-2000:]

    archive = tmp_path / "image.tar"
    run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--archive", archive, "--no-validate"], env=env)
    tag = f"airbuild-parity:{uuid.uuid4().hex[:12]}"
    loaded = docker("load", "-i", archive).stdout
    image = loaded.strip().rsplit(" ", 1)[-1]
    docker("tag", image, tag)
    try:
        out = docker("run", "--rm", "--network", "none", "--user", "0", "--env-file", project / ".env",
                     tag, "python3", "-c", REFERENCE).stdout
    finally:
        docker("image", "rm", "-f", tag, image, check=False)
    theirs = json.loads(out.split("VERDICTS", 1)[1].strip().splitlines()[0])

    assert ours == theirs, f"airbuild: {json.dumps(ours, indent=1)}\nAirflow in the image: {json.dumps(theirs, indent=1)}"
    assert set(ours["errors"]) == EXPECTED_FAILURES, report["files"]
    message = next(f for f in report["files"] if f["file"] == "dags/really_broken.py")["errors"][0]["message"]
    assert message.startswith("ModuleNotFoundError: No module named 'not_installed_in_this_image'"), message
    assert proc.returncode == 1
