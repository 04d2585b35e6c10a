"""An exception airbuild does not expect reaches the user as one line and a log, never as a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, run_cli
from tests.projects import make_project
from tests.test_bases import tiny_rootfs


def corrupted_store(tmp_path: Path) -> Path:
    """A store whose lock file is a directory: nothing the code expects, and nothing a project edit fixes."""
    store = tmp_path / "store"
    (store / "lock").mkdir(parents=True)
    return store


def test_an_internal_error_is_one_line_and_a_log_with_the_traceback(tmp_path):
    store = corrupted_store(tmp_path)
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    env = {"AIRBUILD_CACHE_DIR": str(store)}
    proc = run_cli(["build", project, "--base", f"rootfs:{tmp_path / 'rootfs.tar.gz'}"], env=env, check=False)
    assert proc.returncode == 70
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    first, second = proc.stderr.strip().splitlines()
    assert first == f"airbuild: internal error: IsADirectoryError: [Errno 21] Is a directory: '{store / 'lock'}'"
    log = Path(re.search(r"the full traceback is in (\S+?);", second).group(1))
    assert log.parent == store / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "IsADirectoryError" in text
    assert f"command: airbuild build {project}" in text

    as_json = run_cli(["plan", project, "--base", f"rootfs:{tmp_path / 'rootfs.tar.gz'}", "--json"], env=env,
                      check=False)
    assert as_json.returncode == 70
    body = json.loads(as_json.stdout)
    assert body["exit_code"] == 70 and body["error"].startswith("internal error: IsADirectoryError")
    assert Path(body["log"]).is_file() and Path(body["log"]) != log


def test_watch_stops_when_its_first_build_hits_an_internal_error(tmp_path):
    store = corrupted_store(tmp_path)
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    proc = subprocess.run([sys.executable, "-m", "builder", "watch", project, "--base",
                           f"rootfs:{tmp_path / 'rootfs.tar.gz'}", "--json"],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(store)},
                          capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "error", "stop"]
    assert events[1]["fatal"] is True and events[1]["error"].startswith("internal error: IsADirectoryError")
    assert Path(events[1]["log"]).is_file()
    assert events[2]["exit_code"] == 70 and proc.returncode == 70
    assert "Traceback" not in proc.stderr
