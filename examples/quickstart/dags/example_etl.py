"""A small ETL DAG: extract a few numbers, transform them, load a summary."""

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False, tags=["example"])
def example_etl():
    @task
    def extract() -> list[int]:
        return [1, 2, 3, 4]

    @task
    def transform(values: list[int]) -> int:
        return sum(v * v for v in values)

    @task
    def load(total: int) -> None:
        print(f"sum of squares: {total}")

    load(transform(extract()))


example_etl()
