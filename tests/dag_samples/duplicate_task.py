"""airflow dag with one task id twice"""
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("dup_tasks", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="same")
    EmptyOperator(task_id="same")
