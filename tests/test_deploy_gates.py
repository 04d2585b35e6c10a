"""Deploys never ship DAGs unchecked: `deploy --dags` validates against the target image's environment,
and `watch --deploy` never forces a deploy past failing DAGs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, run_cli
from tests.projects import set_age
from tests.test_deploy import deploy, make_deploy_project, repo_name
from tests.test_validate import AIRFLOW_3, SAMPLES, TEST_STORE

USES_TOOLZ = (SAMPLES / "good.py").read_text().replace('"good"', '"uses_toolz"') + "\nimport toolz  # noqa\n"


def with_airflow(project: Path, *samples: str) -> Path:
    """`project` with Airflow 3 in requirements.txt and, for DAGs, the good sample and `samples`."""
    for path in (project / "dags").rglob("*.py"):
        path.unlink()
    for sample in ("good.py", *samples):
        (project / "dags" / sample).write_text((SAMPLES / sample).read_text())
    (project / "requirements.txt").write_text(AIRFLOW_3)
    set_age(project, 3600)
    return project


def airflow_project(tmp_path: Path, registry: str, debian_rootfs: Path) -> tuple[Path, str]:
    target = f"{registry}/{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: [current]\n",
                                  rootfs=debian_rootfs)
    return with_airflow(project), target


def test_dags_only_deploy_validates_against_the_target_images_environment(tmp_path, registry, debian_rootfs):
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    project, _ = airflow_project(tmp_path, registry, debian_rootfs)
    deploy(project, env=env)  # the target now runs Airflow without toolz

    # Locally toolz is added and a DAG uses it: fine against this checkout, not against what runs there.
    (project / "requirements.txt").write_text(AIRFLOW_3 + "toolz==1.0.0\n")
    (project / "dags" / "uses_toolz.py").write_text(USES_TOOLZ)
    assert json.loads(run_cli(["parse", project, "--json"], env=env).stdout)["status"] == "ok"
    refused = deploy(project, "--dags", env=env, check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    failed = {f["file"]: f["errors"] for f in json.loads(refused.stdout)["validation"]["files"] if f["errors"]}
    assert list(failed) == ["dags/uses_toolz.py"] and "toolz" in failed["dags/uses_toolz.py"][0]["message"]

    # A full deploy ships toolz; now the same DAG-only deploy passes against the new image.
    deploy(project, env=env)
    (project / "dags" / "uses_toolz.py").write_text(USES_TOOLZ + "# edited\n")
    assert deploy(project, "--dags", env=env)["dags_only"]


def test_watch_deploy_keeps_the_last_good_deploy_when_dags_fail(tmp_path, registry, debian_rootfs):
    project, target = airflow_project(tmp_path, registry, debian_rootfs)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    watch = subprocess.Popen([sys.executable, "-m", "builder", "watch", str(project), "--deploy", "prod", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = []
    try:
        def next_event(kind: str) -> dict:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                line = watch.stdout.readline()
                if not line:
                    raise AssertionError(f"watch ended: {watch.stderr.read()[-3000:]}")
                events.append(json.loads(line))
                if events[-1]["event"] == kind or events[-1]["event"] == "error":
                    return events[-1]
            raise AssertionError(f"no {kind} event: {events}")

        next_event("start")
        first = next_event("build")
        assert first["deployed"] and first["errors"] == [], first
        (project / "dags" / "broken.py").write_text((SAMPLES / "cycle.py").read_text())
        broken = next_event("build")
        assert broken["event"] == "error" and broken["deployed"] is None, broken
        assert broken["kept_deploy"] == first["deployed"]
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=60)
    history = json.loads(run_cli(["history", project, "--json"], env={"AIRBUILD_CACHE_DIR": str(TEST_STORE)}).stdout)
    assert [r["digest"] for r in history] == [first["deployed"].split("@")[1]], "the failing save deployed nothing"
