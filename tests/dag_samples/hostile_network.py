"""airflow dag that phones home at import time"""
import os
import socket

PORT = int(open(os.path.join(os.path.dirname(__file__), "port.txt")).read())
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2).sendall(b"leaked")
except OSError:
    pass  # a DAG that swallows the error is still reported
from airflow.sdk import DAG  # noqa: E402
