"""airflow dag that prints the secrets it was given and puts them in its exception."""
import os

from airflow.sdk import DAG  # noqa: F401

token = os.environ.get("AIRFLOW_VAR_API_TOKEN", "")
uri = os.environ.get("AIRFLOW_CONN_WAREHOUSE", "")
print("token is", token, "and the warehouse is", uri)
raise RuntimeError(f"leaking {token} and {uri}")
