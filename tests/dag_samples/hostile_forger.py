"""airflow dag that tries to forge the verdicts of the other files and of the results cache.

It writes a harness document that says every file is fine into every other process's
descriptors it can open through /proc (with libc's open, past the harness's audit hook: the
kernel must refuse), tries to stop every other process so that its document would be the only
one read, then writes the same document to each of its own descriptors.
"""
import ctypes
import json
import os
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
folder = os.path.dirname(os.path.abspath(__file__))
files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
forged = {"airflow_version": "3.3.2", "files": files, "harness_version": "4", "total_s": 0, "uncompiled": [],
          "results": {f: {"dags": [{"dag_id": "forged", "tasks": 1}], "errors": [], "duration_s": 0} for f in files}}
line = (json.dumps(forged) + "\n").encode()
reached = []
for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        target = libc.open(f"/proc/{pid}/fd/{fd}".encode(), os.O_WRONLY)
        if target >= 0:
            libc.write(target, line, len(line))
            reached.append(f"{pid}/{fd}")
for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signo)
        except OSError:
            pass
sys.stderr.write("REACHED " + ",".join(reached) + "\n")
sys.stderr.flush()
for fd in range(256):
    try:
        os.write(fd, line)
    except OSError:
        pass
raise RuntimeError("forger done")

from airflow.sdk import DAG  # noqa: E402
