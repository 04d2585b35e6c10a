"""airflow dag that floods stdout and stderr and raises an exception with a huge message."""
import sys

chunk = "o" * (1 << 20)
for _ in range(200):
    sys.stdout.write(chunk)
    sys.stderr.write(chunk.replace("o", "e"))
sys.stdout.flush()
sys.stderr.flush()
raise ValueError("huge message " + "m" * (300 << 20))

from airflow.sdk import DAG  # noqa: E402
