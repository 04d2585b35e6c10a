"""`airbuild run DAG_ID`: one DAG run end to end in the image's environment, in the sandbox."""

from __future__ import annotations

import json
import socket
import threading

from tests.helpers import run_cli
from tests.test_validate import AIRFLOW_3, TEST_STORE, project_with

RUN_DAG = '''from datetime import datetime
import os, socket

from airflow.sdk import BaseHook, Variable, dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1))
def calls_home():
    @task
    def settings(**context):
        assert os.environ["BUCKET"] == "from-dotenv"
        assert BaseHook.get_connection("warehouse").host == "db.internal"
        assert Variable.get("region") == "eu-west-1"
        return int(context["dag_run"].conf["port"])

    @task
    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"hello from the run")

    connect(settings())


calls_home()
'''


def test_run_executes_a_dag_with_the_users_settings_and_network_and_reports_failures(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py"])
    (project / "dags" / "calls_home.py").write_text(RUN_DAG)
    (project / ".env").write_text("BUCKET=from-dotenv\n")
    (project / "airflow_settings.yaml").write_text(
        "airflow:\n  connections:\n    - conn_id: warehouse\n      conn_type: postgres\n      conn_host: db.internal\n"
        "      conn_password: settings-pass-4242\n"
        "  variables:\n    - variable_name: region\n      variable_value: eu-west-1\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []
    threading.Thread(target=lambda: received.append(listener.accept()[0].recv(100)), daemon=True).start()
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    conf = json.dumps({"port": listener.getsockname()[1]})
    args = ["run", "calls_home", project, "--base", f"rootfs:{debian_rootfs}", "--conf", conf]

    proc = run_cli([*args, "--json"], env=env, check=False)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["state"] == "success", json.dumps(result, indent=1)[-4000:]
    assert [(t["task_id"], t["state"]) for t in result["tasks"]] == [("settings", "success"), ("connect", "success")]
    assert received == [b"hello from the run"], "the run reached this machine's loopback"
    assert "settings-pass-4242" not in proc.stdout + proc.stderr

    # No network: the connecting task fails, the run fails, its log says why.
    proc = run_cli([*args, "--network", "none", "--json"], env=env, check=False)
    offline = json.loads(proc.stdout)
    assert proc.returncode == 1 and offline["state"] == "failed" and not offline["network"]
    states = {t["task_id"]: t for t in offline["tasks"]}
    assert states["settings"]["state"] == "success" and states["connect"]["state"] == "failed"
    assert "ConnectionRefusedError" in states["connect"]["log_tail"] or "unreachable" in states["connect"]["log_tail"]
    assert len(received) == 1, "nothing arrived without the network"
    listener.close()

    # A DAG that is not there: said (as a table here), with the ones that are.
    proc = run_cli(["run", "no_such_dag", project, "--base", f"rootfs:{debian_rootfs}"], env=env, check=False)
    assert proc.returncode == 1 and "no DAG 'no_such_dag'" in proc.stdout and "calls_home" in proc.stdout
    bad = run_cli([*args[:-1], "not json"], env=env, check=False)
    assert bad.returncode == 2 and "--conf is not JSON" in bad.stderr
