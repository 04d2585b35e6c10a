"""DAG validation in the sandbox against a real Airflow 3 (and 2) installed by airbuild's own Python layer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO, descendants, run_cli
from tests.projects import make_project

SAMPLES = REPO / "tests" / "dag_samples"
# Heavy environments (Airflow installs, unpacked) live in one store kept between runs, keyed by content.
TEST_STORE = Path(os.environ.get("AIRBUILD_TEST_STORE", Path.home() / ".cache" / "airbuild" / "test-store"))
AIRFLOW_3 = "apache-airflow==3.3.2\n"
AIRFLOW_2 = "apache-airflow==2.10.5\n"
MANIFEST = "validation:\n  timeout_s: 10\n  memory_mb: 1536\n  processes: 32\n  allowed_failures: [dags/allowed_*.py]\n"


def project_with(tmp_path: Path, requirements: str, dag_files: list[str], name: str = "p") -> Path:
    project = make_project(tmp_path / name)
    shutil.rmtree(project / "dags")
    (project / "dags").mkdir()
    for sample in dag_files:
        shutil.copy(SAMPLES / sample, project / "dags" / sample)
    (project / "requirements.txt").write_text(requirements)
    (project / "astro.yaml").write_text(MANIFEST)
    return project


def parse(project: Path, base: Path, *extra: str, env: dict | None = None, check: bool = False):
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE), **(env or {})}
    proc = run_cli(["parse", project, "--base", f"rootfs:{base}", "--json", *extra], env=env, check=check)
    return proc, json.loads(proc.stdout)


def harness_processes() -> list[str]:
    """DAG harnesses still running below this test process (bwrap's; a Docker sandbox's are containers)."""
    return descendants("/airbuild/harness.py")


def sandbox_containers(settle_s: float = 60) -> list[str]:
    """The sandbox containers left, once those being removed are gone (`docker run --rm` removes a container
    after it exits, and on the vfs driver that takes a while): waits up to `settle_s` for none to be left."""
    deadline = time.monotonic() + settle_s
    while True:
        out = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", "name=airbuild-sandbox-"],
                             capture_output=True, text=True, check=True).stdout
        if not out.split() or time.monotonic() > deadline:
            return out.split()
        time.sleep(0.5)


@pytest.mark.parametrize("sandbox", ["bwrap", "docker"])
def test_broken_and_hostile_dags_are_reported_and_contained(tmp_path, debian_rootfs, docker_client, sandbox):
    files = ["good.py", "settings_reader.py", "syntax_error.py", "missing_module.py", "cycle.py",
             "duplicate_task.py", "duplicate_dag_id.py", "hostile_loop.py", "hostile_forks.py",
             "hostile_memory.py", "hostile_network.py", "hostile_writer.py", "not_a_dag.py"]
    project = project_with(tmp_path, AIRFLOW_3, files)
    (project / "airflow_settings.yaml").write_text(
        "airflow:\n  connections:\n    - conn_id: warehouse\n      conn_type: postgres\n      conn_host: db.internal\n"
        "  variables:\n    - variable_name: limits\n      variable_value: '{\"max\": 3}'\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    (project / "dags" / "port.txt").write_text(str(listener.getsockname()[1]))
    shutil.copy(SAMPLES / "missing_module.py", project / "dags" / "allowed_missing.py")
    (project / "dags" / ".airflowignore").write_text("ignored_file.py\n")
    shutil.copy(SAMPLES / "syntax_error.py", project / "dags" / "ignored_file.py")

    # A variable unique to this run: results are keyed by content, and the store outlives test runs,
    # so without it the hostile files would be answered from an earlier run instead of being imported.
    env = {"AIRFLOW_VAR_OWNER_FROM_ENV": "env-owner", "AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    proc, report = parse(project, debian_rootfs, "--sandbox", sandbox, env=env)
    assert proc.returncode == 1, proc.stderr
    assert report["imported"] == len(report["files"]), "a fresh run imports every file"
    assert report["sandbox"] == sandbox
    assert report["status"] == "failed" and report["airflow_version"] == "3.3.2"
    by_file = {r["file"].removeprefix("dags/"): r for r in report["files"]}
    assert "not_a_dag.py" not in by_file, "safe mode skips files without 'airflow' and 'dag'"
    assert "ignored_file.py" not in by_file, ".airflowignore is honoured"
    kinds = {name: sorted({e["kind"] for e in r["errors"]}) for name, r in by_file.items()}
    assert kinds["good.py"] == [] and by_file["good.py"]["dags"] == [{"dag_id": "good", "tasks": 2}]
    assert kinds["settings_reader.py"] == [], by_file["settings_reader.py"]["errors"]
    assert by_file["settings_reader.py"]["dags"][0]["dag_id"] == "reader_data"
    assert kinds["syntax_error.py"] == ["import"] and "SyntaxError" in by_file["syntax_error.py"]["errors"][0]["traceback"]
    assert "not_installed_anywhere" in by_file["missing_module.py"]["errors"][0]["message"]
    assert kinds["cycle.py"] == ["cycle"]
    assert kinds["duplicate_task.py"] == ["duplicate_task"]
    assert kinds["hostile_loop.py"] == ["timeout"]
    assert kinds["hostile_forks.py"] == ["processes"], "counted from outside: RLIMIT_NPROC spares root"
    assert kinds["hostile_memory.py"] in (["memory"], ["killed"], ["import"])
    assert "sandbox" in kinds["hostile_network.py"]
    assert "sandbox" in kinds["hostile_writer.py"]
    assert by_file["allowed_missing.py"]["allowed_to_fail"] and by_file["allowed_missing.py"]["errors"]
    assert report["duplicates"] == [{"dag_id": "good", "files": ["dags/duplicate_dag_id.py", "dags/good.py"]}]
    slow = {r["file"]: (r["duration_s"], r["errors"]) for r in report["files"] if r["duration_s"] >= 10 + 5}
    assert not slow, f"every file within its limit: {slow}"

    # Nothing escaped: no connection arrived, nothing was written, no process is left.
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert not (project / "dags" / "pwned.txt").exists()
    assert not list(TEST_STORE.glob("rootfs/*/usr/local/lib/pwned.txt"))
    assert harness_processes() == [] and sandbox_containers() == []

    # Fix one file: only it is imported again; the duplicate check still sees every file.
    (project / "dags" / "cycle.py").write_text((SAMPLES / "good.py").read_text().replace('"good"', '"fixed"'))
    proc, again = parse(project, debian_rootfs, "--sandbox", sandbox, env=env)
    assert again["imported"] == 1
    fixed = next(r for r in again["files"] if r["file"] == "dags/cycle.py")
    assert fixed["errors"] == [] and not fixed["cached"]
    assert again["duplicates"] == report["duplicates"]
    junit = tmp_path / "report.xml"
    run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--sandbox", sandbox, "--junit", junit],
            check=False,
            env={"AIRBUILD_CACHE_DIR": str(TEST_STORE), **env})
    xml = junit.read_text()
    assert 'name="dags/hostile_loop.py"' in xml and 'type="timeout"' in xml and "duplicate_dag_id" in xml


def test_airflow_example_dags_parse_cleanly_and_build_gates_on_errors(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py"])
    _, first = parse(project, debian_rootfs, check=True)  # builds the environment
    # This environment's own examples (the store holds other Airflow versions' environments too).
    examples = TEST_STORE / "rootfs" / first["environment"] / "usr/local/lib/python3.11/dist-packages/airflow/example_dags"
    assert examples.is_dir(), examples
    for source in examples.glob("*.py"):
        shutil.copy(source, project / "dags" / source.name)
    for sub in ("libs", "plugins", "subdags"):
        if (examples / sub).is_dir():
            shutil.copytree(examples / sub, project / "dags" / sub)
    proc, report = parse(project, debian_rootfs)
    errors = {r["file"]: r["errors"] for r in report["files"] if r["errors"]}
    assert errors == {} and report["duplicates"] == [], json.dumps(errors, indent=1)[:3000]
    assert len(report["files"]) > 20 and sum(len(r["dags"]) for r in report["files"]) > 20

    shutil.copy(SAMPLES / "cycle.py", project / "dags" / "cycle.py")
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    refused = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}"], env=env, check=False)
    assert refused.returncode == 1 and "dags/cycle.py" in refused.stderr
    assert not (project / ".airbuild" / "image" / "index.json").exists(), "nothing shipped"
    forced = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--force", "--json"], env=env)
    assert json.loads(forced.stdout)["validation"]["status"] == "failed"
    skipped = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json"], env=env)
    assert json.loads(skipped.stdout)["validation"] is None


def test_airflow_2_environment(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_2, [])
    (project / "dags" / "classic.py").write_text(
        "from datetime import datetime\nfrom airflow import DAG\nfrom airflow.models import Variable\n"
        "from airflow.operators.empty import EmptyOperator\n"
        "NAME = Variable.get('name', default_var='classic')\n"
        "with DAG(NAME, start_date=datetime(2024, 1, 1), schedule=None):\n"
        "    EmptyOperator(task_id='a') >> EmptyOperator(task_id='b') >> EmptyOperator(task_id='c')\n")
    (project / "dags" / "broken.py").write_text("from airflow import DAG\nraise ValueError('broken on purpose')\n")
    proc, report = parse(project, debian_rootfs)
    assert report["airflow_version"] == "2.10.5"
    by_file = {r["file"]: r for r in report["files"]}
    assert by_file["dags/classic.py"]["dags"] == [{"dag_id": "classic", "tasks": 3}]
    assert "broken on purpose" in by_file["dags/broken.py"]["errors"][0]["message"]
    assert proc.returncode == 1


def test_image_without_airflow_skips_validation_in_build(tmp_path, debian_rootfs, airbuild_cache):
    project = make_project(tmp_path / "p")
    result = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json"]).stdout)
    assert result["validation"]["status"] == "skipped" and "Airflow" in result["validation"]["reason"]


def test_project_tests_run_with_pytest_in_the_sandbox(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3 + "pytest==8.3.5\n", ["good.py"])
    (project / "tests" / "dags" / "test_dags.py").write_text(
        "import os, socket\n"
        "def test_dags_are_mounted():\n    assert os.path.exists('/usr/local/airflow/dags/good.py')\n"
        "def test_no_network():\n"
        "    try:\n        socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "    except OSError:\n        return\n    raise AssertionError('network reachable')\n"
        "def test_fails_on_purpose():\n    assert os.environ.get('AIRBUILD_EXPECT') == 'never set'\n")
    env = {"AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    proc = run_cli(["test", project, "--base", f"rootfs:{debian_rootfs}", "--", "-q"], env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "1 failed, 2 passed" in proc.stdout and "test_fails_on_purpose" in proc.stdout


def test_without_a_sandbox_parse_refuses_unless_told_to_run_unconfined(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py", "cycle.py"])
    (project / "dags" / "writer.py").write_text(
        "from pathlib import Path\nfrom airflow import DAG\n"
        "Path(__file__).with_name('written.txt').write_text('x')\n")
    env = {"AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    parse(project, debian_rootfs, env=env)  # the environment, built with every tool at hand
    # A machine with neither bubblewrap nor a Docker daemon: only python3 and uv on PATH.
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    (bare / "uv").symlink_to(shutil.which("uv"))
    no_tools = {**env, "PATH": str(bare), "AIRBUILD_DOCKER": str(tmp_path / "no-docker")}
    proc, cached = parse(project, debian_rootfs, env=no_tools)
    assert proc.returncode == 1 and cached["imported"] == 0 and cached["sandbox"] is None, \
        "nothing to import: answered without a sandbox"
    (project / "dags" / "fresh.py").write_text((SAMPLES / "good.py").read_text().replace('"good"', '"fresh"'))
    proc = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}", "--json"], check=False,
                   env={"AIRBUILD_CACHE_DIR": str(TEST_STORE), **no_tools})
    assert proc.returncode == 2 and "no sandbox" in json.loads(proc.stdout)["error"]
    assert "--no-sandbox" in proc.stderr

    proc, report = parse(project, debian_rootfs, "--no-sandbox", env=no_tools)
    assert proc.returncode == 1, proc.stderr
    assert report["airflow_version"] == "3.3.2", "the image's Python and Airflow, not the host's"
    assert report["sandbox"] == "none"
    by_file = {r["file"]: r for r in report["files"]}
    assert not any(r["cached"] for r in report["files"]), "results from a confined run are not reused unconfined"
    assert by_file["dags/good.py"]["dags"] == [{"dag_id": "good", "tasks": 2}]
    assert [e["kind"] for e in by_file["dags/cycle.py"]["errors"]] == ["cycle"]
    assert "sandbox" in {e["kind"] for e in by_file["dags/writer.py"]["errors"]}, "writes are still reported"
    assert not (project / "dags" / "written.txt").exists()


def test_airflow_modules_are_imported_once_and_compiled_but_project_code_stays_in_the_child(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py"])
    # A module the project provides under the airflow namespace (Airflow extends airflow.__path__ over
    # sys.path, here include/ through the image's PYTHONPATH): the harness must not import it itself, or
    # its loop would escape the per-file limits.
    (project / "Dockerfile").write_text("FROM scratch\nENV PYTHONPATH=/usr/local/airflow/include\n")
    (project / "include" / "airflow").mkdir(parents=True)
    (project / "include" / "airflow" / "project_hook.py").write_text("while True:\n    pass\n")
    (project / "dags" / "shadow.py").write_text("from airflow.sdk import DAG\nfrom airflow.project_hook import x\n")
    (project / "astro.yaml").write_text(MANIFEST.replace("timeout_s: 10", "timeout_s: 5"))
    env = {"AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    _, first = parse(project, debian_rootfs, env=env)
    site = TEST_STORE / "rootfs" / first["environment"] / "usr/local/lib/python3.11/dist-packages/airflow"
    compiled = [site / "__pycache__" / "configuration.cpython-311.pyc",
                site / "sdk" / "__pycache__" / "__init__.cpython-311.pyc"]
    assert all(pyc.exists() for pyc in compiled), "the harness's imports were compiled into the unpacked environment"
    for pyc in compiled:
        pyc.unlink()

    proc, report = parse(project, debian_rootfs, env={**env, "AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex})
    by_file = {r["file"]: r for r in report["files"]}
    assert [e["kind"] for e in by_file["dags/shadow.py"]["errors"]] == ["timeout"], "the loop ran in the child"
    assert by_file["dags/good.py"]["errors"] == []
    assert all(pyc.exists() for pyc in compiled), "recompiled after the run that imported them from source"


def test_ctrl_c_during_a_docker_sandbox_run_leaves_no_container(tmp_path, debian_rootfs, docker_client):
    project = project_with(tmp_path, AIRFLOW_3, ["good.py"])
    (project / "astro.yaml").write_text(MANIFEST.replace("timeout_s: 10", "timeout_s: 120"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(TEST_STORE),
           "AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    parse(project, debian_rootfs, "--sandbox", "docker")  # the environment and its Docker image exist
    shutil.copy(SAMPLES / "hostile_loop.py", project / "dags" / "hostile_loop.py")
    before = set(sandbox_containers(settle_s=0))
    proc = subprocess.Popen([sys.executable, "-m", "builder", "parse", str(project), "--base",
                             f"rootfs:{debian_rootfs}", "--sandbox", "docker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while set(sandbox_containers(settle_s=0)) == before and time.monotonic() < deadline:  # the loop is running
        time.sleep(0.2)
    assert set(sandbox_containers(settle_s=0)) - before, "a sandbox container ran"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr
    assert set(sandbox_containers()) <= before, "the container was removed"


ASTRO_INTEGRITY_TEST = '''"""The project's DAG rules, run by `astro dev parse` (and airbuild parse)."""
import os

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag

BAG = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
EXCEPTIONS = open(".astro/dag_integrity_exceptions.txt").read().split()


def test_no_import_errors():
    assert not BAG.import_errors


@pytest.mark.parametrize("dag_id", sorted(BAG.dags))
def test_every_dag_has_tags(dag_id):
    assert dag_id in EXCEPTIONS or BAG.dags[dag_id].tags, f"{dag_id} has no tags"
'''


def test_parse_runs_astros_own_parse_test_and_reports_its_cases(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3 + "pytest==8.3.5\n", ["good.py"])
    (project / "dags" / "tagged.py").write_text(
        (SAMPLES / "good.py").read_text().replace('"good"', '"tagged", tags=["team"]'))
    (project / ".astro").mkdir()
    (project / ".astro" / "test_dag_integrity_default.py").write_text(ASTRO_INTEGRITY_TEST)
    (project / ".astro" / "dag_integrity_exceptions.txt").write_text("none\n")
    junit = tmp_path / "report.xml"
    proc, report = parse(project, debian_rootfs, "--junit", junit)
    assert proc.returncode == 1, proc.stderr[-2000:]
    cases = {case["name"]: case for case in report["astro_tests"]}
    assert cases["test_no_import_errors"]["outcome"] == "passed"
    assert cases["test_every_dag_has_tags[tagged]"]["outcome"] == "passed"
    assert cases["test_every_dag_has_tags[good]"]["outcome"] == "failed"
    assert "good has no tags" in cases["test_every_dag_has_tags[good]"]["message"]
    assert all(not f["errors"] for f in report["files"]), "every file imports: only Astro's rule fails"
    xml = junit.read_text()
    assert 'classname="astro"' in xml and "good has no tags" in xml

    # The team lists the DAG as an exception: the test is run again (its inputs changed) and passes.
    (project / ".astro" / "dag_integrity_exceptions.txt").write_text("good\n")
    proc, report = parse(project, debian_rootfs)
    assert proc.returncode == 0 and all(c["outcome"] == "passed" for c in report["astro_tests"]), report["astro_tests"]
    table = run_cli(["parse", project, "--base", f"rootfs:{debian_rootfs}"], env={"AIRBUILD_CACHE_DIR": str(TEST_STORE)})
    assert "astro test test_every_dag_has_tags[good]" in table.stdout


PID_NAMESPACE_DAG = '''"""An airflow dag named after the PID namespace its import ran in."""
import os

from airflow.sdk import DAG

namespace = os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]")
with DAG(dag_id=f"{name}_" + namespace, schedule=None):
    pass
'''


def comparable(report: dict) -> list[dict]:
    """What a run found, without what differs between runs (times, what a file printed, cache flags)."""
    return [{"file": f["file"], "dags": f["dags"], "errors": f["errors"]} for f in report["files"]
            if not f["file"].startswith("dags/ns_")]


def test_parallel_workers_give_the_serial_results_and_a_fork_bomb_stops_only_its_own_file(tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["hostile_forks.py", "cycle.py", "syntax_error.py",
                                                 "missing_module.py", "duplicate_task.py"])
    for n in range(10):
        (project / "dags" / f"good_{n:02d}.py").write_text(
            (SAMPLES / "good.py").read_text().replace('"good"', f'"good_{n:02d}"'))
    for name in ("ns_a", "ns_b", "ns_c"):  # consecutive in the sorted listing: one to each of three workers
        (project / "dags" / f"{name}.py").write_text(PID_NAMESPACE_DAG.replace("{name}", name))
    (project / "astro.yaml").write_text(MANIFEST + "  workers: 3\n")

    env = {"AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}  # new settings: every file imported (the store outlives runs)
    _, serial = parse(project, debian_rootfs, "--workers", "1", env=env)
    env = {"AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    _, parallel = parse(project, debian_rootfs, env=env)  # astro.yaml's workers: 3

    assert serial["workers"] == 1 and parallel["workers"] == 3
    assert serial["imported"] == parallel["imported"] == len(parallel["files"]) == 18
    assert comparable(parallel) == comparable(serial), "the same results, in the same order"
    namespaces = {report["workers"]: {d["dag_id"].split("_", 2)[2] for f in report["files"]
                                      if f["file"].startswith("dags/ns_") for d in f["dags"]}
                  for report in (serial, parallel)}
    assert len(namespaces[1]) == 1 and len(namespaces[3]) == 3, "each worker has its own PID namespace"

    by_file = {f["file"].removeprefix("dags/"): f for f in parallel["files"]}
    assert [e["kind"] for e in by_file["hostile_forks.py"]["errors"]] == ["processes"]
    for n in range(10):  # imported beside the fork bomb, in its worker and in the others
        assert by_file[f"good_{n:02d}.py"]["errors"] == []
        assert by_file[f"good_{n:02d}.py"]["dags"] == [{"dag_id": f"good_{n:02d}", "tasks": 2}]
    assert [e["kind"] for e in by_file["duplicate_task.py"]["errors"]] == ["duplicate_task"]
    assert [e["kind"] for e in by_file["cycle.py"]["errors"]] == ["cycle"]
    assert harness_processes() == []

    # The same project again: answered from the cache whatever the number of workers.
    _, cached = parse(project, debian_rootfs, "--workers", "2", env=env)
    assert cached["imported"] == 0 and cached["workers"] == 0 and comparable(cached) == comparable(parallel)
    bad = run_cli(["parse", project, "--workers", "0"], check=False)
    assert bad.returncode == 2 and "--workers takes a number from 1 to 256" in bad.stderr


def preimport_probe(name: str, module: str) -> str:
    """An airflow dag whose id says whether `module` was imported before the file's own code ran."""
    return (f'"""An airflow dag probing the pre-import of {module}."""\nimport sys\n\n'
            f'before = "{module}" in sys.modules\nimport {module}  # noqa: E402\n'
            f'from airflow.sdk import DAG  # noqa: E402\n\n'
            f'with DAG(dag_id="{name}_" + ("shared" if before else "own"), schedule=None):\n    pass\n')


def test_image_modules_the_dags_import_are_preimported_once_and_project_modules_stay_in_the_child(
        tmp_path, debian_rootfs):
    project = project_with(tmp_path, AIRFLOW_3, ["missing_module.py", "good.py"])
    # natsort and slugify: in the image (Airflow's dependencies), imported by nothing of Airflow's parsing.
    (project / "dags" / "third_a.py").write_text(preimport_probe("third_a", "natsort"))
    (project / "dags" / "third_b.py").write_text(preimport_probe("third_b", "natsort"))
    (project / "dags" / "deep.py").write_text(preimport_probe("deep", "slugify.slugify"))
    # The project's own module (in dags/, on sys.path): its code runs only in the child, with the limits.
    (project / "dags" / "local_helpers.py").write_text("VALUE = 1\n")
    (project / "dags" / "local.py").write_text(preimport_probe("local", "local_helpers"))
    env = {"AIRFLOW_VAR_TEST_RUN": uuid.uuid4().hex}
    proc, report = parse(project, debian_rootfs, "--workers", "1", env=env)
    by_file = {f["file"].removeprefix("dags/"): f for f in report["files"]}
    assert report["imported"] == len(report["files"])
    assert by_file["third_a.py"]["dags"] == [{"dag_id": "third_a_shared", "tasks": 0}]
    assert by_file["third_b.py"]["dags"] == [{"dag_id": "third_b_shared", "tasks": 0}]
    assert by_file["deep.py"]["dags"] == [{"dag_id": "deep_shared", "tasks": 0}]
    assert by_file["local.py"]["dags"] == [{"dag_id": "local_own", "tasks": 0}]
    # A module that cannot be pre-imported is skipped there: its error still shows for its file.
    assert "not_installed_anywhere" in by_file["missing_module.py"]["errors"][0]["message"]
    assert by_file["good.py"]["errors"] == [] and by_file["good.py"]["dags"] == [{"dag_id": "good", "tasks": 2}]
    assert all(not f["errors"] for name, f in by_file.items() if name != "missing_module.py")
