"""airflow dag importing something the image lacks"""
import not_installed_anywhere  # noqa: F401
from airflow.sdk import DAG
