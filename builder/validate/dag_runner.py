"""airbuild's DAG runner: run by the image's own python3 inside the sandbox, for `airbuild run`.

Runs one DAG end to end as `airflow dags test` does (DAG.test(): every task in this process,
against a private SQLite database made here), then prints one JSON document on the original
stdout: the run's state, each task instance's state and, for the tasks that did not succeed,
the tail of what they logged. Airflow's and the tasks' own output go to a log file in the
sandbox's /tmp, read back per task at the end.

Usage: python3 dag_runner.py REQUEST.json   (dag_id, conf, dags_folder, log_lines, log_path)
"""

import inspect
import json
import os
import sys
import time
import traceback

RESULT = None  # the original stdout: main() sends everything else to the log file
LOG_PATH = "/tmp/airbuild-run.log"  # the request's log_path where the sandbox's /tmp is not private
START_MARK = "[DAG TEST] starting task_id="


def main():
    global LOG_PATH, RESULT
    RESULT = os.fdopen(os.dup(1), "w")
    request = json.load(open(sys.argv[1]))
    LOG_PATH = request.get("log_path") or LOG_PATH
    log = os.open(LOG_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    started = time.monotonic()
    try:
        document = run(request)
    except BaseException as exc:  # whatever the DAG or Airflow raised, the caller gets a document
        document = {"state": "error", "error": f"{type(exc).__name__}: {str(exc)[:4000]}",
                    "traceback": traceback.format_exc()[-20000:], "tasks": []}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    document["duration_s"] = round(time.monotonic() - started, 3)
    document["log_tail"] = tail(read_log(), request.get("log_lines", 40))
    attach_task_logs(document, request.get("log_lines", 40))
    RESULT.write(json.dumps(document, default=str) + "\n")
    RESULT.flush()


def run(request):
    # The image's Airflow: importable only here, in the sandbox, with the run's environment set.
    from airflow.utils import db

    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.2
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow < 3.2
    db.initdb()
    options = {"dag_folder": request["dags_folder"]}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:  # removed in Airflow 3.3
        options["include_examples"] = False
    if request["dags_folder"] not in sys.path:  # as the DAG processor puts it
        sys.path.append(request["dags_folder"])
    bag = DagBag(**options)
    dag = bag.dags.get(request["dag_id"])
    if dag is None:
        return {"state": "error", "tasks": [],
                "error": f"no DAG {request['dag_id']!r} in {request['dags_folder']}",
                "available": sorted(bag.dags),
                "import_errors": {os.path.relpath(k, request["dags_folder"]): str(v)[-4000:]
                                  for k, v in bag.import_errors.items()}}
    parameters = inspect.signature(dag.test).parameters
    arguments = {"run_conf": request["conf"]} if request.get("conf") and "run_conf" in parameters else {}
    dag_run = dag.test(**arguments)
    tasks = []
    never = float("inf")  # tasks that did not start go last
    for ti in sorted(dag_run.get_task_instances(),
                     key=lambda t: (t.start_date.timestamp() if t.start_date else never, t.task_id, t.map_index)):
        tasks.append({"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state or "none"),
                      "try_number": ti.try_number,
                      "duration_s": round(ti.duration, 3) if ti.duration is not None else None})
    return {"state": str(dag_run.state), "run_id": dag_run.run_id, "tasks": tasks}


def read_log():
    try:
        with open(LOG_PATH, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def tail(text, lines):
    return "\n".join(text.splitlines()[-lines:])


def attach_task_logs(document, lines):
    """Each task's stretch of the log (from its start mark to the next), kept for those that did not succeed."""
    text = read_log()
    stretches = {}
    for chunk in text.split(START_MARK)[1:]:
        task_id = chunk.split()[0] if chunk.split() else ""
        stretches[task_id] = stretches.get(task_id, "") + START_MARK + chunk
    for task in document.get("tasks", []):
        if task["state"] != "success":
            task["log_tail"] = tail(stretches.get(task["task_id"], ""), lines)


if __name__ == "__main__":
    main()
