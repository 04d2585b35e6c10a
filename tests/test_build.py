"""End-to-end builds of a sample project, checked with the real tools: skopeo, umoci, docker."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.helpers import run, run_cli, tool
from tests.projects import make_project, set_age


def build(project: Path, base: Path | str, *extra: str, env: dict | None = None, check: bool = True):
    """`airbuild build --json`; `base` is a rootfs tarball or a KIND:LOCATION string."""
    base_arg = base if isinstance(base, str) else f"rootfs:{base}"
    proc = run_cli(["build", project, "--base", base_arg, "--json", *extra], env=env, check=check)
    return json.loads(proc.stdout) if check else proc


def layer_members(result: dict) -> dict[str, dict[str, tarfile.TarInfo]]:
    """For each layer the build made (not the base's): path -> tar header, read from the OCI layout."""
    layout = Path(result["oci_layout"])
    out = {}
    for layer in result["layers"]:
        if layer["rule"] != "base":
            with tarfile.open(layout / "blobs" / layer["digest"].replace(":", "/")) as archive:
                out[layer["digest"]] = {m.name: m for m in archive.getmembers()}
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def astro_base(tmp_path_factory, debian_rootfs) -> str:
    """An OCI layout like an Astro runtime image (USER astro, WORKDIR set), built by airbuild from the rootfs."""
    root = tmp_path_factory.mktemp("astro-base")
    (root / "proj").mkdir()
    (root / "proj" / "Dockerfile").write_text("FROM scratch\nWORKDIR /usr/local/airflow\nUSER astro\n")
    result = build(root / "proj", debian_rootfs, "--oci", root / "layout",
                   env={"AIRBUILD_CACHE_DIR": str(root / "cache")})
    return f"oci:{root / 'layout'}:{result['tag']}"


def test_same_inputs_give_the_same_digest_anywhere(tmp_path, debian_rootfs):
    """Different directories, mtimes, permissions under another umask and empty caches: same bytes."""
    first = make_project(tmp_path / "one" / "proj", age_s=3600)
    second = make_project(tmp_path / "elsewhere" / "deeper" / "proj", age_s=86400 * 30)
    for path in (second / "dags" / "etl.py", second / "include" / "data.csv"):
        path.chmod(0o600)  # as a umask of 077 leaves them: normalised to 0644 in the layer
    (second / "include" / "run.sh").chmod(0o700)
    set_age(second, 7200)

    a = build(first, debian_rootfs, env={"AIRBUILD_CACHE_DIR": str(tmp_path / "cache-a")})
    b = run([sys.executable, "-c", "import os, sys; os.umask(0o077); from builder.cli.main import main; "
             f"sys.exit(main(['build', {str(second)!r}, '--base', 'rootfs:{debian_rootfs}', '--json']))"],
            env={"AIRBUILD_CACHE_DIR": str(tmp_path / "cache-b")})
    b = json.loads(b.stdout)
    assert a["manifest_digest"] == b["manifest_digest"]
    assert [l["diff_id"] for l in a["layers"]] == [l["diff_id"] for l in b["layers"]]
    assert a["tag"] == "deploy-" + a["manifest_digest"].removeprefix("sha256:")[:12]
    assert all(not l["cached"] for l in a["layers"][1:]), "a fresh store builds every project layer"


def test_dag_edit_rebuilds_only_the_dag_layer(project, debian_rootfs, airbuild_cache):
    first = build(project, debian_rootfs)
    again = build(project, debian_rootfs)
    assert again["manifest_digest"] == first["manifest_digest"]
    assert all(l["cached"] for l in again["layers"])
    assert sum(l["files_read"] for l in again["layers"]) == 0, "a no-op build reads no file"

    (project / "dags" / "reports" / "daily.py").write_text("# edited\n" + (project / "dags" / "etl.py").read_text())
    edited = build(project, debian_rootfs)
    rebuilt = {l["rule"]: l for l in edited["layers"] if not l["cached"]}
    assert list(rebuilt) == ["dags"]
    assert "dags/reports/daily.py" in rebuilt["dags"]["reason"]
    assert edited["manifest_digest"] != first["manifest_digest"]
    project_files = next(l for l in edited["layers"] if l["rule"] == "project-files")
    assert project_files["files_read"] == 0, "the project-files layer is not re-read"
    assert next(l for l in edited["layers"] if l["rule"] == "dags")["files_read"] == 1


def test_plan_explains_without_building(project, debian_rootfs, airbuild_cache):
    build(project, debian_rootfs)
    (project / "include" / "data.csv").write_text("a,b\n3,4\n")
    proc = run_cli(["plan", project, "--base", f"rootfs:{debian_rootfs}", "--json"])
    plan = json.loads(proc.stdout)
    todo = {l["rule"]: l["reason"] for l in plan["layers"] if not l["cached"]}
    assert todo == {"project-files": "changed: include/data.csv", "dags": "a layer below it changed"}
    assert plan["manifest_digest"] is None
    # Nothing was built: the next build still has both layers to make.
    built = build(project, debian_rootfs)
    assert {l["rule"] for l in built["layers"] if not l["cached"]} == {"project-files", "dags"}


def test_layout_is_valid_for_skopeo_and_umoci(project, debian_rootfs, airbuild_cache, tmp_path):
    result = build(project, debian_rootfs)
    layout = Path(result["oci_layout"])
    info = json.loads(run([tool("skopeo"), "inspect", f"oci:{layout}:{result['tag']}"]).stdout)
    assert info["Digest"] == result["manifest_digest"]
    assert info["Layers"] == [l["digest"] for l in result["layers"]]
    assert "AIRFLOW__CORE__LOAD_EXAMPLES=False" in info["Env"]

    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:{result['tag']}", bundle])
    airflow = bundle / "rootfs" / "usr" / "local" / "airflow"
    assert (airflow / "dags" / "etl.py").read_text() == (project / "dags" / "etl.py").read_text()
    assert os.readlink(airflow / "include" / "link.csv") == "data.csv"
    assert (airflow / "include" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (bundle / "rootfs" / "usr" / "bin" / "python3").exists()
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["cwd"] == "/usr/local/airflow"


def test_ignored_files_are_in_no_layer(project, debian_rootfs, airbuild_cache):
    (project / "astro.lock").write_text('{"version": 1, "base": {"source": "x", "digest": "y"}}\n')
    result = build(project, debian_rootfs)
    names = {name for members in layer_members(result).values() for name in members}
    prefix = "usr/local/airflow/"
    for ignored in (".env", "airflow_settings.yaml", "logs/scheduler.log", "docs/notes.md", "scratch.tmp",
                    "astro.lock", ".airbuild/state.json"):
        assert prefix + ignored not in names, ignored
    assert not any(n.startswith(prefix + ".airbuild") for n in names)
    for kept in ("keep.tmp", ".dockerignore", "Dockerfile", "include/nested/deep/query.sql", "dags/etl.py"):
        assert prefix + kept in names, kept


def test_layer_headers_are_normalised(project, astro_base, airbuild_cache):
    result = build(project, astro_base, env={"SOURCE_DATE_EPOCH": "1700000000"})
    layout = Path(result["oci_layout"])
    for digest, members in layer_members(result).items():
        raw = (layout / "blobs" / digest.replace(":", "/")).read_bytes()
        assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", "gzip: mtime 0, OS byte fixed"
        assert zlib.decompress(raw, 31)  # a complete, valid gzip stream
        names = list(members)
        assert names == sorted(names)
        for member in members.values():
            assert member.mtime == 1700000000
            assert member.uname == "" and member.gname == ""
            assert member.pax_headers == {}
            if member.isdir():
                assert member.mode == 0o755
            elif member.isfile():
                assert member.mode in (0o644, 0o755)
    dags = layer_members(result)[result["layers"][-1]["digest"]]
    etl = dags["usr/local/airflow/dags/etl.py"]
    assert (etl.uid, etl.gid) == (50000, 0), "owned by the base's USER (astro) resolved via /etc/passwd"
    assert (dags["usr"].uid, dags["usr/local/airflow"].uid) == (0, 50000), "only the workdir is handed over"


def test_docker_loads_and_runs_the_archive(project, astro_base, airbuild_cache, docker_client, tmp_path):
    archive = tmp_path / "image.tar"
    result = build(project, astro_base, "--archive", archive)
    ref = f"project:{result['tag']}"
    loaded = docker_client("load", "-i", archive)
    try:
        assert ref in loaded.stdout
        shown = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                              "stat -c '%U %G %a' dags/reports/weekly.py && cat dags/reports/weekly.py "
                              "&& ls -a && id -un").stdout
        owner_line, rest = shown.split("\n", 1)
        assert owner_line == "astro root 644"
        assert (project / "dags" / "reports" / "weekly.py").read_text() in rest
        assert ".env" not in rest.split() and "keep.tmp" in rest.split()
        assert rest.strip().endswith("astro")
        # The same file is also an OCI archive.
        info = json.loads(run([tool("skopeo"), "inspect", f"oci-archive:{archive}"]).stdout)
        assert info["Digest"] == result["manifest_digest"]
    finally:
        docker_client("rmi", "-f", ref, check=False)


def test_symlink_out_of_the_project_is_an_error(project, debian_rootfs, airbuild_cache, tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    (project / "dags" / "evil.py").symlink_to("../../secret.txt")
    proc = build(project, debian_rootfs, check=False)
    assert proc.returncode == 2
    assert "dags/evil.py" in proc.stderr and "outside the project" in proc.stderr


def test_run_instruction_names_its_line_and_the_backend(project, debian_rootfs, airbuild_cache):
    (project / "Dockerfile").write_text("FROM scratch\nUSER root\nRUN apt-get update\n")
    proc = build(project, debian_rootfs, "--backend", "native", check=False)
    assert proc.returncode == 2
    assert "Dockerfile:3:" in proc.stderr and "BuildKit" in proc.stderr and "native backend" in proc.stderr


def test_dockerfile_copy_and_config(project, debian_rootfs, airbuild_cache):
    (project / "astro.yaml").write_text("owner:\n  user: astro\n")
    (project / "Dockerfile").write_text(
        "ARG TOOLS=/opt/tools\n"
        "FROM quay.io/astronomer/astro-runtime:12.1.0\n"
        "ARG TOOLS=/opt/tools\n"
        "ENV TOOLS_HOME=${TOOLS} GREETING=\"hello world\"\n"
        "LABEL team=data\n"
        "COPY include/run.sh ${TOOLS}/\n"
        "COPY --chown=astro:root --chmod=0750 plugins /opt/plugins\n"
        "EXPOSE 8080\n"
        "USER astro\n"
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]\n"
        "CMD [\"echo hi\"]\n")
    result = build(project, debian_rootfs)
    assert [l["rule"] for l in result["layers"]] == ["base", "dockerfile:COPY@6", "dockerfile:COPY@7",
                                                      "project-files", "dags"]
    layout = Path(result["oci_layout"])
    layers = list(layer_members(result).values())
    assert layers[0]["opt/tools/run.sh"].mode == 0o755 and layers[0]["opt/tools/run.sh"].uid == 0
    plugin = layers[1]["opt/plugins/my_plugin.py"]
    assert (plugin.uid, plugin.gid, plugin.mode) == (50000, 0, 0o750)
    info = json.loads(run_cli(["inspect", layout, "--json"]).stdout)
    assert info["manifest_digest"] == result["manifest_digest"]
    config = info["config"]
    assert "TOOLS_HOME=/opt/tools" in config["Env"] and "GREETING=hello world" in config["Env"]
    assert config["Labels"] == {"team": "data"}
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert (config["User"], config["Entrypoint"], config["Cmd"]) == ("astro", ["/bin/sh", "-c"], ["echo hi"])
    assert "OnBuild" not in config


def test_crash_or_interrupt_mid_build_leaves_the_store_usable(project, debian_rootfs, airbuild_cache, tmp_path):
    """Kill a build while it writes a big layer, then build again: same image as an undisturbed build."""
    rng = random.Random(7)
    big = project / "include" / "big.bin"
    big.write_bytes(rng.randbytes(120 * 1024 * 1024))
    set_age(project, 3600)
    for signal_name in ("SIGKILL", "SIGINT"):
        # The writer itself is killed: a build in this process, not one forked by the build server
        # (tests/test_build_server.py covers a killed client).
        tmp_dir = airbuild_cache / "tmp"
        earlier = {p.name for p in tmp_dir.iterdir()} if tmp_dir.exists() else set()  # the killed build's
        proc = subprocess.Popen([sys.executable, "-m", "builder", "build", project, "--base",
                                 f"rootfs:{debian_rootfs}", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "AIRBUILD_SERVER": "0"})
        _wait_for(lambda: _layer_in_progress(airbuild_cache, earlier), proc)
        os.kill(proc.pid, getattr(__import__("signal"), signal_name))
        proc.wait(timeout=60)
        assert proc.returncode != 0
        leftovers = [p for p in tmp_dir.iterdir()] if tmp_dir.exists() else []
        for record in (airbuild_cache / "layers").glob("*.json"):
            blob = json.loads(record.read_text())["digest"]
            assert (airbuild_cache / "blobs" / blob.replace(":", "/")).exists(), "no record without its blob"
        if signal_name == "SIGINT":
            assert leftovers == [], "Ctrl-C removes its temp files"

    resumed = build(project, debian_rootfs)
    assert list((airbuild_cache / "tmp").iterdir()) == [], "a later build sweeps a crashed writer's temp files"
    clean = build(project, debian_rootfs, env={"AIRBUILD_CACHE_DIR": str(tmp_path / "clean-cache")})
    assert resumed["manifest_digest"] == clean["manifest_digest"]


def _layer_in_progress(cache: Path, earlier: set[str]) -> bool:
    """The build (the only one running on this store) is writing a project layer (the base import is done):
    a blob temp file that was not there before it started (temp files are named without PIDs)."""
    tmp = cache / "tmp"
    return (cache / "bases").exists() and tmp.exists() and any(
        p.name.startswith("blob.") and p.name not in earlier and p.stat().st_size > 1 << 20 for p in tmp.iterdir())


def _wait_for(condition, proc, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"build ended before it could be interrupted: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("the build never started writing its layer")


def test_two_builds_share_a_store_at_once(tmp_path, debian_rootfs, airbuild_cache):
    projects = [make_project(tmp_path / name / "proj") for name in ("a", "b")]
    procs = [subprocess.Popen([sys.executable, "-m", "builder", "build", p, "--base", f"rootfs:{debian_rootfs}",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in projects]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    digests = {json.loads(o[0])["manifest_digest"] for o in outputs}
    assert len(digests) == 1
