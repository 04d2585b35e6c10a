"""Hostile DAG files against the sandbox, as an attacker with a pull request would write them.

A CI job runs `airbuild parse` with secrets in its environment and a home with registry and
netrc credentials. The DAG files try to read them from every place the host could show
(`/proc`, the home, the store, `/sys`, `/dev`), to forge the other files' verdicts, to flood
airbuild with output, and to leak the secrets they were given through the report. Run under
bubblewrap and under the docker sandbox.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO, descendants
from tests.test_validate import AIRFLOW_3, TEST_STORE, project_with

# The CI job's own secrets: not given to the DAGs, so they must see none of them.
CALLER_SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-canary-8f1e2d", "ASTRO_API_TOKEN": "astro-canary-77ab",
                  "AIRBUILD_REGISTRY_PASSWORD": "registry-canary-c0ffee", "MY_CREDENTIAL": "credential-canary-42"}
# Given to the DAGs on purpose (Airflow variables and connections): they may see them, reports must not.
GIVEN_SECRETS = {"AIRFLOW_VAR_API_TOKEN": "given-token-5150",
                 "AIRFLOW_CONN_WAREHOUSE": "postgres://loader:given-conn-pass-99@db.internal:5432/dw"}
GIVEN_MASKED = ("given-token-5150", "given-conn-pass-99")
HOME_SECRETS = ("docker-config-canary-31", "netrc-canary-64")
# What a DAG's environment may hold: what airbuild sets, the connections and variables given, and
# what the sandbox itself adds (bwrap's PWD, docker's HOSTNAME).
ALLOWED_VARIABLES = {"PATH", "HOME", "AIRFLOW_HOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PWD", "HOSTNAME",
                     "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                     "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "AIRFLOW_CONFIG",
                     "AIRFLOW__LOGGING__BASE_LOG_FOLDER", "AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY"}
ALLOWED_DEVICES = {"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
                   "stdin", "stdout", "tty", "urandom", "zero"}
MANIFEST = "validation:\n  timeout_s: 60\n  memory_mb: 3072\n  processes: 32\n"


def hostile_project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    files = ["good.py", "cycle.py", "hostile_snoop.py", "hostile_forger.py", "hostile_output.py", "secret_echo.py"]
    project = project_with(tmp_path, AIRFLOW_3, files)
    (project / "astro.yaml").write_text(MANIFEST)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    auth = base64.b64encode(f"ci:{HOME_SECRETS[0]}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"registry.invalid": {"auth": auth}}}))
    (home / ".netrc").write_text(f"machine index.invalid login ci password {HOME_SECRETS[1]}\n")
    other = tmp_path / "other-project"
    (other / "dags").mkdir(parents=True)
    (other / "dags" / "theirs.py").write_text("SECRET = 'other-project-canary'\n")
    records = next(TEST_STORE.glob("dag-results/*.json"), TEST_STORE / "dag-results" / "none.json")
    places = {"files": [str(home / ".docker" / "config.json"), str(home / ".netrc"), str(project / ".env"),
                        str(other / "dags" / "theirs.py"), str(records), "/proc/1/environ", "/proc/1/mem"],
              "directories": [str(home), str(TEST_STORE), str(TEST_STORE / "rootfs"), str(TEST_STORE / "blobs"),
                              str(other), str(project), "/root"]}
    (project / "dags" / "places.json").write_text(json.dumps(places))
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE), "HOME": str(home), "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),
           "DOCKER_CONFIG": str(Path.home() / ".docker"),
           **CALLER_SECRETS, **GIVEN_SECRETS, "AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    return project, home, env


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run airbuild, sampling its own peak resident memory (VmHWM: that process alone, not the sandbox)."""
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=900)
    sampler.join()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), peak[0]


def findings_of(result: dict) -> dict:
    message = result["errors"][0]["message"]
    assert "FINDINGS " in message, message[:2000]
    return json.loads(bytes.fromhex(message.split("FINDINGS ", 1)[1].split()[0]))


@pytest.mark.parametrize("sandbox", ["bwrap", "docker"])
def test_hostile_dags_find_no_secrets_forge_nothing_and_stay_bounded(tmp_path, debian_rootfs, docker_client, sandbox):
    project, home, env = hostile_project(tmp_path)
    junit = tmp_path / "report.xml"
    argv = [sys.executable, "-m", "builder", "parse", str(project), "--base", f"rootfs:{debian_rootfs}", "--json",
            "--sandbox", sandbox, "--junit", str(junit)]
    proc, peak_rss = run_measured(argv, env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert "error" not in report, report["error"][-3000:]
    assert report["sandbox"] == sandbox and report["imported"] == len(report["files"]) == 6
    by_file = {r["file"].removeprefix("dags/"): r for r in report["files"]}

    # Verdicts are the files' own: nothing the forger wrote was taken for a result.
    assert by_file["good.py"]["errors"] == [] and by_file["good.py"]["dags"] == [{"dag_id": "good", "tasks": 2}]
    assert [e["kind"] for e in by_file["cycle.py"]["errors"]] == ["cycle"]
    assert all(d["dag_id"] != "forged" for r in report["files"] for d in r["dags"])
    forger = by_file["hostile_forger.py"]
    assert forger["errors"] and not forger["dags"], "the forger's own verdict: whatever it wrote, a failure"
    assert "REACHED " in forger["stderr"], forger["stderr"][-2000:]
    reached = [e for e in forger["stderr"].split("REACHED ", 1)[1].splitlines()[0].split(",") if e]
    assert reached == [], f"wrote into another process's descriptors: {reached}"

    # What the snooping file could see of the host.
    found = findings_of(by_file["hostile_snoop.py"])
    seen = json.dumps(found)
    for secret in (*CALLER_SECRETS.values(), *HOME_SECRETS, "other-project-canary"):
        assert secret not in seen, f"the sandbox showed {secret}"
    for pid, environ in found["environ"].items():
        names = {entry.split("=", 1)[0] for entry in environ.split("\0") if entry}
        extra = {n for n in names - ALLOWED_VARIABLES if not n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        assert not extra, f"process {pid} has variables the user did not give the DAGs: {extra}"
    for pid, cmdline in found["cmdline"].items():
        for host_path in (str(tmp_path), str(TEST_STORE), str(Path.home())):
            assert host_path not in cmdline, f"/proc/{pid}/cmdline names the host's {host_path}: {cmdline!r}"
    assert found["readable"] == {}, f"host files readable: {sorted(found['readable'])}"
    host_dirs = {d for d in found["listable"] if d not in ("/sys", "/dev", "/root")}
    assert host_dirs == set(), f"host directories listable: {host_dirs}"
    assert set(found["listable"].get("/dev", [])) <= ALLOWED_DEVICES, found["listable"]["/dev"]
    if sandbox == "bwrap":
        assert not found["listable"].get("/sys"), "bwrap mounts no /sys"
    others = [entry for entry in found["fd_writable"] if entry.split("/")[0] != found["pid"]]
    assert others == [], f"another process's descriptors are writable: {others}"

    # Bounded: output and message capped, the total noted, the exception still named, our memory small.
    flood = by_file["hostile_output.py"]
    assert flood["stdout_bytes"] >= 200 << 20 and flood["stderr_bytes"] >= 200 << 20
    assert len(flood["stdout"]) < 70_000 and len(flood["stderr"]) < 70_000
    error = flood["errors"][0]
    assert error["message"].startswith("ValueError: huge message mmm"), error["message"][:200]
    assert len(error["message"]) < 70_000 and len(error.get("traceback", "")) < 70_000
    assert "more characters not kept" in error["message"]
    assert peak_rss < 400 << 20, f"airbuild itself grew to {peak_rss >> 20} MiB"

    # Given secrets reach the DAG (it needs them) but no report: terminal, --json, JUnit, the results cache.
    echo = by_file["secret_echo.py"]
    assert "***" in echo["errors"][0]["message"] and "***" in echo["stdout"]
    table = subprocess.run([sys.executable, "-m", "builder", "parse", str(project), "--base",
                            f"rootfs:{debian_rootfs}", "--sandbox", sandbox],
                           env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True)
    assert "secret_echo.py" in table.stdout and "***" in table.stdout
    outputs = {"--json": proc.stdout, "stderr": proc.stderr, "junit": junit.read_text(), "table": table.stdout,
               "table stderr": table.stderr}
    cached = subprocess.run(["grep", "-rlF", "-e", GIVEN_MASKED[0], "-e", GIVEN_MASKED[1],
                             str(TEST_STORE / "dag-results"), str(TEST_STORE / "dag-runs")],
                            capture_output=True, text=True)
    outputs["results cache"] = cached.stdout
    for secret in (*GIVEN_MASKED, *CALLER_SECRETS.values()):
        leaks = [where for where, text in outputs.items() if secret in text]
        assert not leaks, f"{secret} appears in {leaks}"

    # Nothing left running.
    assert descendants("/airbuild/harness.py") == []


def test_project_tests_see_no_caller_secrets_and_print_none(tmp_path, debian_rootfs):
    """`airbuild test` (and `deploy --pytest`): pytest in the sandbox, its output streamed through masking."""
    project = project_with(tmp_path, AIRFLOW_3 + "pytest==8.3.5\n", ["good.py"])
    (project / "tests" / "dags" / "test_snoop.py").write_text(
        "import os\n"
        "def everything_visible():\n"
        "    seen = []\n"
        "    for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
        "        for what in ('environ', 'cmdline'):\n"
        "            try:\n"
        "                seen.append(open(f'/proc/{pid}/{what}', 'rb').read().decode('utf-8', 'replace'))\n"
        "            except OSError:\n"
        "                pass\n"
        "    return '\\n'.join(seen)\n"
        f"def test_no_caller_secret_is_visible():\n"
        f"    visible = everything_visible()\n"
        f"    for secret in {sorted(CALLER_SECRETS.values())!r}:\n"
        f"        assert secret.encode().hex() not in visible.encode().hex(), 'found ' + secret.encode().hex()\n"
        "def test_prints_what_it_was_given():\n"
        "    print('GIVEN', os.environ['AIRFLOW_VAR_API_TOKEN'])\n"
        "    assert False, os.environ['AIRFLOW_VAR_API_TOKEN']\n")
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE), **CALLER_SECRETS, **GIVEN_SECRETS}
    proc = subprocess.run([sys.executable, "-m", "builder", "test", str(project), "--base", f"rootfs:{debian_rootfs}",
                           "--", "-q", "-rA"], env={**os.environ, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed, 2 passed" in proc.stdout, proc.stdout[-3000:]
    assert "GIVEN ***" in proc.stdout
    for secret in (*GIVEN_MASKED, *CALLER_SECRETS.values()):
        assert secret not in proc.stdout + proc.stderr
