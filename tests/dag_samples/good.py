"""A plain, valid DAG (airflow dag)."""
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("good", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
