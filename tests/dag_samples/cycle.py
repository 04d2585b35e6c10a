"""airflow dag with a cycle"""
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("cyclic", start_date=datetime(2024, 1, 1), schedule=None):
    a, b, c = (EmptyOperator(task_id=t) for t in "abc")
    a >> b >> c >> a
