"""airflow dag with a syntax error"""
from airflow.sdk import DAG
with DAG("broken_syntax" schedule=None):
    pass
