"""Sample Airflow projects (Astro layout) written into a test's temp dir."""

from __future__ import annotations

import os
import time
from pathlib import Path

from builder.project.statcache import RACY_MARGIN_NS

DAG = '''from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator

with DAG("{dag_id}", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    EmptyOperator(task_id="start") >> EmptyOperator(task_id="end")
'''

FILES = {
    "Dockerfile": "FROM quay.io/astronomer/astro-runtime:12.1.0\nENV AIRFLOW__CORE__LOAD_EXAMPLES=False\nUSER astro\n",
    "requirements.txt": "# none yet\n",
    "packages.txt": "# none yet\n\n",
    ".dockerignore": "docs/\n*.tmp\n!keep.tmp\n",
    ".env": "AIRFLOW_CONN_SECRET=postgresql://u:hunter2@db/x\n",
    "airflow_settings.yaml": "airflow: {}\n",
    "logs/scheduler.log": "a log line\n",
    "docs/notes.md": "internal notes\n",
    "scratch.tmp": "ignored by *.tmp\n",
    "keep.tmp": "re-included by !keep.tmp\n",
    "include/data.csv": "a,b\n1,2\n",
    "include/nested/deep/query.sql": "select 1;\n",
    "plugins/my_plugin.py": "# a plugin\n",
    "tests/dags/test_dags.py": "def test_nothing():\n    pass\n",
    "dags/etl.py": DAG.format(dag_id="etl"),
    "dags/reports/daily.py": DAG.format(dag_id="daily_report"),
    "dags/reports/weekly.py": DAG.format(dag_id="weekly_report"),
}


def make_project(root: Path, *, age_s: int = 3600) -> Path:
    """Write the sample project; files get mtimes `age_s` in the past, as in a real checkout."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    script = root / "include" / "run.sh"
    script.write_text("#!/bin/sh\necho run\n")
    script.chmod(0o755)
    (root / "include" / "link.csv").symlink_to("data.csv")
    set_age(root, age_s)
    return root


def set_age(root: Path, age_s: int) -> None:
    then = time.time() - age_s
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (then, then), follow_symlinks=False)
    # utime sets each ctime to now, and a build does not trust a stat younger than its racy margin.
    time.sleep(2 * RACY_MARGIN_NS / 1e9)
