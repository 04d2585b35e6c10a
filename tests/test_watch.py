"""`airbuild watch` driven by real file changes; its JSON events read line by line."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO, rule_layers
from tests.projects import make_project
from tests.test_validate import AIRFLOW_3, SAMPLES, TEST_STORE, harness_processes, project_with

BROKEN_DAG = '"""airflow dag"""\nfrom airflow.sdk import DAG\nwith DAG("half_written" schedule=None):\n'


class Watcher:
    def __init__(self, project: Path, base: Path, env: dict[str, str]):
        self.stderr = project.parent / "watch.stderr"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "builder", "watch", str(project), "--base", f"rootfs:{base}", "--json"],
            stdout=subprocess.PIPE, stderr=open(self.stderr, "w"), text=True,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)})
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def next(self, timeout: float = 30) -> dict:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no watch event within {timeout} s (exit {self.process.poll()}); stderr:\n"
                        f"{self.stderr.read_text()[-3000:]}")

    def next_build(self, timeout: float = 120) -> dict:
        while True:
            event = self.next(timeout)
            if event["event"] in ("build", "error"):
                return event

    def quiet(self, seconds: float) -> list[dict]:
        time.sleep(seconds)
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


@pytest.fixture
def watcher_factory():
    started = []

    def start(project: Path, base: Path, env: dict[str, str] | None = None) -> Watcher:
        watcher = Watcher(project, base, env or {})
        started.append(watcher)
        assert watcher.next()["event"] == "start"
        return watcher

    yield start
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()


def test_dag_edit_burst_and_clean_stop(tmp_path, debian_rootfs, airbuild_cache, watcher_factory):
    project = make_project(tmp_path / "p")
    watcher = watcher_factory(project, debian_rootfs)
    first = watcher.next_build()
    assert first["event"] == "build" and first["validation"] == "skipped"

    (project / "dags" / "etl.py").write_text("# edited\n")
    edit = watcher.next_build()
    assert edit["changed"] == ["dags/etl.py"] and edit["rebuilt_layers"] == ["dags"]
    assert edit["manifest_digest"] != first["manifest_digest"] and 0 < edit["latency_s"] < 30
    index = json.loads((project / ".airbuild" / "image" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == edit["manifest_digest"]

    for i in range(200):  # a checkout writing many files at once
        (project / "include" / f"generated_{i:03}.sql").write_text(f"select {i};\n")
    (project / "scratch.swp").write_text("editor noise")
    burst = watcher.next_build()
    assert len(burst["changed"]) == 200 and burst["rebuilt_layers"] == ["project-files", "dags"]
    assert [e for e in watcher.quiet(2) if e["event"] in ("build", "error")] == [], "one build for the burst"

    (project / ".airbuild" / "noise.txt").write_text("our own output is ignored")
    (project / "logs" / "scheduler.log").write_text("ignored by .dockerignore defaults")
    assert [e for e in watcher.quiet(1.5) if e["event"] in ("build", "error")] == []

    (project / "astro.yaml").write_text("platfrom: typo\n")
    broken = watcher.next_build()
    assert broken["event"] == "error" and "platfrom" in broken["error"]
    (project / "astro.yaml").unlink()
    recovered = watcher.next_build()
    assert recovered["event"] == "build" and recovered["manifest_digest"] == burst["manifest_digest"]

    code = watcher.stop()
    assert code in (0, 130)
    assert list((airbuild_cache / "tmp").iterdir()) == [], "no half-written output left behind"


def test_broken_dag_keeps_the_last_good_image_and_requirements_rebuild(tmp_path, debian_rootfs, watcher_factory):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py"])
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    watcher = watcher_factory(project, debian_rootfs, env)
    good = watcher.next_build(timeout=600)
    assert good["event"] == "build" and good["validation"] == "ok", good

    # Its served harness runs from an unpacked environment in the store: a gc waits until watch ends rather
    # than evict it between two saves. (--keep-days 100000: a gc that would evict nothing, but holds the store.)
    gc = subprocess.Popen([sys.executable, "-m", "builder", "cache", "gc", "--keep-days", "100000"],
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting for the builds using the store" in gc.stderr.readline()
        time.sleep(1)
        assert gc.poll() is None, "gc went ahead while watch's harness used the store"
    finally:
        gc.kill()
        gc.wait()

    (project / "dags" / "half.py").write_text(BROKEN_DAG)
    broken = watcher.next_build()
    assert broken["event"] == "error" and broken["errors"][0]["file"] == "dags/half.py"
    index = json.loads((project / ".airbuild" / "image" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == good["manifest_digest"], "the last good image stays"

    # Unique content: the shared test store keeps layers from earlier runs.
    (project / "dags" / "half.py").write_text((SAMPLES / "good.py").read_text().replace('"good"', '"whole"')
                                              + f"# run {uuid.uuid4().hex}\n")
    fixed = watcher.next_build()
    assert fixed["event"] == "build" and fixed["errors"] == [] and fixed["rebuilt_layers"] == ["dags"]

    def python_layer() -> list[str]:
        record = json.loads((project / ".airbuild" / "build.json").read_text())
        return [l["digest"] for l in rule_layers(record, "python-requirements")]

    before = python_layer()
    (project / "requirements.txt").write_text(AIRFLOW_3 + "tabulate==0.9.0\n")
    upgraded = watcher.next_build(timeout=600)
    assert upgraded["event"] == "build" and upgraded["changed"] == ["requirements.txt"], upgraded
    assert python_layer() != before and upgraded["validation"] == "ok", "a new Python layer, validated against"
    assert watcher.stop() in (0, 130)
    assert harness_processes() == [], "the warm harness stops with watch"
