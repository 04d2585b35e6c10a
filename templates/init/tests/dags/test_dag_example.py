"""Checks every DAG in dags/: it imports cleanly, has tags, and its tasks retry at least twice.

An example of the tests a project keeps in tests/ (run them with `airbuild test`, or `astro dev pytest`);
change the rules to your team's.
"""

import inspect
import os

import pytest

DAGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dags")
APPROVED_TAGS: set[str] = set()  # empty: any tag is fine


def dag_bag():
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2 and later
    except ImportError:
        from airflow.models import DagBag
    options = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    return DagBag(dag_folder=DAGS, **options)


BAG = dag_bag()


def test_no_import_errors():
    assert not BAG.import_errors, "\n".join(f"{path}: {error}" for path, error in BAG.import_errors.items())


@pytest.mark.parametrize("dag_id", sorted(BAG.dags))
def test_dag_has_tags(dag_id):
    dag = BAG.dags[dag_id]
    assert dag.tags, f"{dag_id} ({dag.fileloc}) has no tags"
    if APPROVED_TAGS:
        assert set(dag.tags) <= APPROVED_TAGS, f"{dag_id}: tags outside {sorted(APPROVED_TAGS)}"


@pytest.mark.parametrize("dag_id", sorted(BAG.dags))
def test_dag_retries(dag_id):
    dag = BAG.dags[dag_id]
    assert (dag.default_args or {}).get("retries", 0) >= 2, f"{dag_id} ({dag.fileloc}) must retry its tasks at least twice"
