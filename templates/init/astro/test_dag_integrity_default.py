"""Every DAG file imports without errors: the check `astro dev parse` runs (Astro CLI's default integrity test).

airbuild writes this file with `airbuild init`, for projects also used with the Astro CLI; airbuild itself
validates DAGs in its sandbox (`airbuild parse`). It imports each file as Airflow's DagBag does, with the
lookups a DAG may make at import time answered by placeholders: environment variables (os.getenv),
connections (BaseHook.get_connection) and Airflow variables (Variable.get). Files listed one per line in
.astro/dag_integrity_exceptions.txt (paths relative to AIRFLOW_HOME) may fail. Works with Airflow 2 and 3.
"""

import inspect
import logging
import os
from contextlib import contextmanager

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2 and later
except ImportError:
    from airflow.models import DagBag
from airflow.models import Connection, Variable

EXCEPTIONS_FILE = os.path.join(".astro", "dag_integrity_exceptions.txt")
_UNSET = object()


def _placeholder_getenv(key, *args, **kwargs):
    """The variable's value when set and not empty, else the caller's default, else a placeholder string."""
    default = args[0] if args else kwargs.get("default")
    value = os.environ.get(key)
    if value:
        return value
    if default is None and key in ("JENKINS_HOME", "PYTEST_THEME"):  # tools that branch on these being unset
        return None
    return default if default else f"MOCKED_{key.upper()}_VALUE"


class _AnyKey(dict):
    """A deserialized JSON variable: every key reads as a placeholder."""

    def __getitem__(self, key):
        return "MOCKED_KEY_VALUE"


def _placeholder_variable(key, default_var=_UNSET, deserialize_json=False, **kwargs):
    default = kwargs.get("default", default_var)
    print(f"Variable {key!r} read while parsing: using a placeholder")
    if default is not _UNSET:
        return default
    return _AnyKey() if deserialize_json else "NON_DEFAULT_MOCKED_VARIABLE_VALUE"


def _placeholder_connection(conn_id, *args, **kwargs):
    print(f"Connection {conn_id!r} read while parsing: using an empty one")
    return Connection(conn_id)


def _install_placeholders():
    os.getenv = _placeholder_getenv
    Variable.get = _placeholder_variable
    for module in ("airflow.hooks.base", "airflow.sdk"):
        try:
            hook = getattr(__import__(module, fromlist=["BaseHook"]), "BaseHook")
        except (ImportError, AttributeError):
            continue
        hook.get_connection = _placeholder_connection
    try:
        from airflow import sdk
    except ImportError:
        return
    if hasattr(sdk, "Variable"):
        sdk.Variable.get = _placeholder_variable


@contextmanager
def _quiet(namespace):
    logger = logging.getLogger(namespace)
    before, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = before


def _results():
    """(file relative to AIRFLOW_HOME, the import error or None) for every DAG file."""
    _install_placeholders()
    options = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    with _quiet("airflow"):
        bag = DagBag(**options)
    home = os.environ.get("AIRFLOW_HOME", os.getcwd())
    results = {os.path.relpath(path, home): error.strip() for path, error in bag.import_errors.items()}
    for dag in bag.dags.values():
        results.setdefault(os.path.relpath(dag.fileloc, home), None)
    return sorted(results.items())


def _exceptions():
    if not os.path.exists(EXCEPTIONS_FILE):
        return set()
    with open(EXCEPTIONS_FILE) as handle:
        return {line.strip() for line in handle if line.strip()}


RESULTS = _results()


@pytest.mark.parametrize("rel_path, error", RESULTS, ids=[path for path, _ in RESULTS])
def test_file_imports(rel_path, error):
    if error is not None and rel_path not in _exceptions():
        raise AssertionError(f"{rel_path} failed to import:\n{error}")
