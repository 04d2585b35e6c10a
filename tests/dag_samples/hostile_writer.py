"""airflow dag that writes outside its temporary directory"""
import os

for target in (os.path.join(os.path.dirname(__file__), "pwned.txt"), "/usr/local/lib/pwned.txt"):
    try:
        with open(target, "w") as handle:
            handle.write("pwned")
    except OSError:
        pass
with open("/tmp/scratch.txt", "w") as handle:  # its own tmp is fine
    handle.write("ok")
from airflow.sdk import DAG  # noqa: E402
