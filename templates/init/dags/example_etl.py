"""An example DAG: extract a few numbers, square and sum them, print the result.

Run it in the built image:  airflow db migrate && airflow dags test example_etl
"""

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
)
def example_etl():
    @task
    def extract() -> list[int]:
        return [1, 2, 3, 4]

    @task
    def transform(values: list[int]) -> int:
        return sum(value * value for value in values)

    @task
    def load(total: int) -> None:
        print(f"sum of squares: {total}")

    load(transform(extract()))


example_etl()
