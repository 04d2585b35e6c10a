"""airbuild installed from its wheel into a fresh virtual environment, run as venv/bin/airbuild without that
bin/ on PATH (as pipx, `uv tool install`, CI images and IDE run configurations run it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, rule_layers, run
from tests.test_validate import TEST_STORE

# What a user's shell has: the system's directories (docker, bwrap, gpgv), never the venv's bin/.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def installed(module_tmp) -> Path:
    """venv/bin/airbuild of a wheel built from this checkout, its dependencies from PyPI (pip's cache helps)."""
    root = module_tmp("install")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", root / "dist", REPO])
    wheel = next((root / "dist").glob("airbuild-*.whl"))
    run([sys.executable, "-m", "venv", root / "venv"])
    run([root / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel])
    return root / "venv" / "bin" / "airbuild"


def user_env() -> dict[str, str]:
    """This machine's environment (its CA bundle settings...), with a PATH that lacks the venv's bin/ and nothing
    that would make Python import this checkout instead of the installed wheel."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PATH": PATH, "AIRBUILD_CACHE_DIR": str(TEST_STORE)}


def airbuild(installed: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(installed), *map(str, args)], cwd=cwd, env=user_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"airbuild {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def quickstart(tmp_path: Path) -> Path:
    project = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", project, ignore=shutil.ignore_patterns(".airbuild", "astro.lock"))
    return project


def test_the_installed_command_builds_parses_and_watches_the_quickstart(installed, tmp_path):
    assert shutil.which("uv", path=PATH) is None, "uv must be found through its package, not PATH"
    assert not str(installed.parent) in PATH.split(os.pathsep)
    where = subprocess.run([str(installed.parent / "python"), "-I", "-c", "import builder; print(builder.__file__)"],
                           env=user_env(), capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.parent.parent)) and "site-packages" in where, where
    project = quickstart(tmp_path)
    built = json.loads(airbuild(installed, "build", project, "--archive", tmp_path / "image.tar", "--json").stdout)
    assert [l["rule"].split("/")[0] for l in built["layers"]] == \
        ["base", "system-packages", *["python-requirements"] * len(rule_layers(built, "python-requirements")),
         "project-files", "dags"]
    assert built["validation"]["status"] == "ok" and (tmp_path / "image.tar").is_file()
    parsed = json.loads(airbuild(installed, "parse", "--json", cwd=project / "dags").stdout)
    assert parsed["status"] == "ok" and [d["dag_id"] for d in parsed["files"][0]["dags"]] == ["example_etl"]

    # watch: builds once, then Ctrl-C stops it cleanly.
    watch = subprocess.Popen([str(installed), "watch", "--json"], cwd=project, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=user_env())
    try:
        events = [json.loads(watch.stdout.readline())]
        while events[-1]["event"] not in ("build", "error", "stop"):
            events.append(json.loads(watch.stdout.readline()))
        assert events[-1]["event"] == "build", events[-1]
        assert events[-1]["manifest_digest"] == built["manifest_digest"] and events[-1]["validation"] == "ok"
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1]) == {"event": "stop"}
    assert "Traceback" not in err

    made = json.loads(airbuild(installed, "init", tmp_path / "fresh", "--json").stdout)
    assert (tmp_path / "fresh" / ".astro" / "test_dag_integrity_default.py").is_file() and len(made["files"]) == 12


def test_watch_stops_when_the_installation_lacks_uv(installed, tmp_path):
    """A first build that no save can fix (uv gone from the installation) stops the watch instead of waiting."""
    broken = tmp_path / "venv"
    shutil.copytree(installed.parent.parent, broken, symlinks=True)
    python = broken / "bin" / "python"
    run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "uv"])
    project = quickstart(tmp_path)  # no astro.lock: requirements.txt must be resolved, with uv
    # -I: the copy's own site-packages only (never this checkout, whatever the working directory)
    proc = subprocess.run([str(python), "-I", "-m", "builder", "watch", project, "--json"], capture_output=True,
                          text=True, env=user_env(), cwd=tmp_path, timeout=300)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "error", "stop"]
    assert events[1]["fatal"] is True and "uv" in events[1]["error"] and "not installed" in events[1]["error"]
    assert proc.returncode == 1 and events[2]["exit_code"] == 1
