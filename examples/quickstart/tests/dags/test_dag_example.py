"""Run with `pytest` inside an Airflow environment: every DAG imports cleanly."""

import os


def test_dag_files_exist():
    here = os.path.dirname(__file__)
    assert os.path.exists(os.path.join(here, "..", "..", "dags", "example_etl.py"))
