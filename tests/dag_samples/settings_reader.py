"""Reads connections and variables at import time, in every call form (airflow dag)."""
from datetime import datetime

from airflow.sdk import DAG, BaseHook, Variable
from airflow.providers.standard.operators.empty import EmptyOperator

TEAM = Variable.get("team", default="data")
OWNER = Variable.get("owner_from_env")
LIMITS = Variable.get("limits", deserialize_json=True)
UNKNOWN = Variable.get(key="not_defined_anywhere")
WAREHOUSE = BaseHook.get_connection("warehouse")
assert OWNER == "env-owner", OWNER
assert LIMITS == {"max": 3}, LIMITS
assert WAREHOUSE.host == "db.internal", WAREHOUSE.host

with DAG(f"reader_{TEAM}", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="only")
