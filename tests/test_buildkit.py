"""The BuildKit backend for RUN, against the real dockerd: images that run, engine calls counted,
reproducible layers from clean stores and a pruned Docker cache, secrets kept out of every blob."""

from __future__ import annotations

import gzip
import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cli
from tests.projects import make_project, set_age

SECRET = "s3cr3t-token-7f1d9a0c2b"
RUN_DOCKERFILE = """\
FROM quay.io/astronomer/astro-runtime:12.1.0
ENV AIRFLOW__CORE__LOAD_EXAMPLES=False
USER root
ARG GREETING=hello
RUN mkdir -p /opt/tools && echo "$GREETING from RUN" > /opt/tools/greeting && useradd --uid 4242 --create-home builder && rm /etc/issue && date > /var/log/built-at
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /opt/tools/token.len && sha256sum /run/secrets/token | cut -c1-64 > /opt/tools/token.sha256
USER astro
"""


def build(project: Path, base: Path, *extra: str, env: dict | None = None, check: bool = True):
    proc = run_cli(["build", project, "--base", f"rootfs:{base}", "--json", *extra], env=env, check=check)
    return json.loads(proc.stdout) if check else proc


def layer(result: dict, rule: str) -> dict:
    return next(l for l in result["layers"] if l["rule"] == rule)


def docker_cli() -> str:
    """The docker CLI airbuild finds for BuildKit here (tests wrap it to count calls)."""
    from builder.docker.engine import detect

    return detect().client


@pytest.fixture
def counted_docker(tmp_path: Path) -> tuple[dict, Path]:
    """(environment pointing airbuild at a docker wrapper that logs every call, the log)."""
    log = tmp_path / "docker-calls.log"
    wrapper = tmp_path / "bin" / "docker"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {docker_cli()} "$@"\n')
    wrapper.chmod(0o755)
    return {"AIRBUILD_DOCKER": str(wrapper)}, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def run_project(root: Path, dockerfile: str = RUN_DOCKERFILE) -> Path:
    project = make_project(root)
    (project / "Dockerfile").write_text(dockerfile)
    set_age(project, 3600)
    return project


@pytest.fixture
def engine_images(docker_client):
    """Removes the images a test made in dockerd: `engine_images.append(ref)`; parents by project name."""
    made: list[str] = []
    yield made
    for ref in made:
        docker_client("image", "rm", "-f", ref, check=False)
        listed = docker_client("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"airbuild-parent/{ref}",
                               check=False).stdout.split()
        if listed:
            docker_client("image", "rm", *listed, check=False)


def test_the_suite_runs_this_checkout():
    import builder

    assert Path(builder.__file__).resolve().parent == REPO / "builder"


def test_run_layers_build_and_the_image_runs(tmp_path, debian_rootfs, airbuild_cache, docker_client, engine_images):
    """USER root, a RUN that writes files and creates a user, a RUN that reads a secret; docker run shows them."""
    project = run_project(tmp_path / "bk-run")
    secret = tmp_path / "token"
    secret.write_text(SECRET)
    archive = tmp_path / "image.tar"
    engine_images.append("bk-run")
    result = build(project, debian_rootfs, "--archive", archive, "--secret", f"id=token,src={secret}",
                   "--build-arg", "GREETING=bonjour")
    assert [l["rule"] for l in result["layers"]] == ["base", "dockerfile:RUN@5", "dockerfile:RUN@6",
                                                     "project-files", "dags"]
    engine = result["engine"]
    assert engine["builds"] == 1 and engine["instructions"] == 2, "consecutive RUNs: one engine invocation"
    assert engine["mode"] in ("classic", "buildx") and "BuildKit via" in engine["description"]
    ref = f"bk-run:{result['tag']}"
    engine_images.append(ref)
    docker_client("load", "-i", archive)
    shown = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                          "cat /opt/tools/greeting /opt/tools/token.len /opt/tools/token.sha256; id -un; "
                          "id builder; test -d /home/builder && echo home; test -e /etc/issue || echo no-issue; "
                          "test -e /var/log/built-at || echo no-log; cat dags/etl.py | head -1").stdout.split("\n")
    import hashlib

    assert shown[:4] == ["bonjour from RUN", str(len(SECRET)), hashlib.sha256(SECRET.encode()).hexdigest(), "astro"]
    assert shown[4].startswith("uid=4242(builder)")
    assert shown[5:8] == ["home", "no-issue", "no-log"], "whiteout kept, volatile file dropped"

    layout = Path(result["oci_layout"])
    with tarfile.open(layout / "blobs" / layer(result, "dockerfile:RUN@5")["digest"].replace(":", "/")) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "etc/.wh.issue" in names and "var/log/built-at" not in names
    assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in members)
    home = next(m for m in members if m.name == "home/builder")
    assert (home.uid, home.gid) == (4242, 4242), "owners as the RUN made them"
    shadow = tarfile.open(layout / "blobs" / layer(result, "dockerfile:RUN@5")["digest"].replace(":", "/"))
    line = next(l for l in shadow.extractfile("etc/shadow").read().decode().splitlines() if l.startswith("builder:"))
    assert line.split(":")[2] == "", "password change day clamped to SOURCE_DATE_EPOCH=0: ageing off"
    _assert_secret_nowhere(SECRET, [airbuild_cache, project, archive])


def _assert_secret_nowhere(secret: str, places: list[Path]) -> None:
    """The secret in no file under `places`, gzip layers decompressed (tar archives searched as bytes)."""
    needle = secret.encode()
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in files:
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            assert needle not in data, f"the secret is in {path}"


def test_unchanged_and_dag_edit_builds_never_call_docker(tmp_path, debian_rootfs, airbuild_cache, docker_client,
                                                         counted_docker, engine_images):
    env, log = counted_docker
    project = run_project(tmp_path / "bk-count")
    (tmp_path / "token").write_text(SECRET)
    args = ("--secret", f"id=token,src={tmp_path / 'token'}")
    engine_images.append("bk-count")
    first = build(project, debian_rootfs, *args, env=env)
    made = calls(log)
    assert sum(1 for c in made if c.startswith("build ")) == 1, made
    assert first["engine"]["calls"] == len(made), "the build counts the engine calls the wrapper saw"

    log.unlink()
    again = build(project, debian_rootfs, *args, env=env)
    assert again["manifest_digest"] == first["manifest_digest"] and again["engine"] is None
    (project / "dags" / "etl.py").write_text((project / "dags" / "etl.py").read_text() + "# edited\n")
    edited = build(project, debian_rootfs, *args, env=env)
    assert [l["rule"] for l in edited["layers"] if not l["cached"]] == ["dags"]
    assert edited["engine"] is None
    assert calls(log) == [], "neither a no-op nor a DAG edit calls docker"

    # Another checkout sharing the store, with no engine reachable at all: the RUN layers come from the store.
    other = tmp_path / "elsewhere" / "bk-count"
    shutil.copytree(project, other, symlinks=True, ignore=shutil.ignore_patterns(".airbuild"))
    elsewhere = build(other, debian_rootfs, *args, env={**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert elsewhere["manifest_digest"] == edited["manifest_digest"]
    assert calls(log) == []

    changed = build(project, debian_rootfs, *args, "--build-arg", "GREETING=hi", env=env)
    assert [l["rule"] for l in changed["layers"] if not l["cached"]] == ["dockerfile:RUN@5", "dockerfile:RUN@6",
                                                                         "project-files", "dags"]
    assert layer(changed, "dockerfile:RUN@5")["reason"] == "rule configuration changed"
    assert sum(1 for c in calls(log) if c.startswith("build ")) == 1


DETERMINISTIC = """\
FROM scratch
USER root
RUN mkdir -p /opt/app/bin && printf '#!/bin/sh\\necho app\\n' > /opt/app/bin/app && chmod 0755 /opt/app/bin/app && useradd --uid 4343 --create-home runner && python3 -c "import json; json.dump({'ok': 1}, open('/opt/app/config.json', 'w'))"
USER astro
"""


def test_deterministic_run_gives_the_same_digest_from_clean_stores_and_docker_cache(
        tmp_path, debian_rootfs, docker_client, engine_images):
    engine_images.append("bk-same")
    results = []
    for attempt in ("a", "b"):
        docker_client("image", "rm", "-f", *_images(docker_client, "airbuild-parent/bk-same"), check=False)
        docker_client("builder", "prune", "-af")
        project = run_project(tmp_path / attempt / "bk-same", DETERMINISTIC)
        results.append(build(project, debian_rootfs, env={"AIRBUILD_CACHE_DIR": str(tmp_path / f"store-{attempt}")}))
        assert results[-1]["engine"]["builds"] == 1
        time.sleep(1.1)  # another second on every clock the RUN reads
    a, b = results
    assert a["manifest_digest"] == b["manifest_digest"]
    assert layer(a, "dockerfile:RUN@3")["diff_id"] == layer(b, "dockerfile:RUN@3")["diff_id"]


def _images(docker_client, reference: str) -> list[str]:
    return sorted(set(docker_client("image", "ls", "-q", reference).stdout.split())) or ["none"]


def test_no_engine_is_a_clear_error(tmp_path, debian_rootfs, airbuild_cache):
    project = run_project(tmp_path / "bk-none")
    proc = build(project, debian_rootfs, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, check=False)
    assert proc.returncode == 1
    message = proc.stderr
    assert f"{project / 'Dockerfile'}:5: RUN (rule dockerfile, layer dockerfile:RUN@5)" in message
    assert "none is reachable" in message and "Cannot connect to the Docker daemon" in message

    fake = tmp_path / "bin" / "docker"  # a Docker 28 CLI without the buildx plugin
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncase "$1" in version) echo "28.2.2|20.10.24|linux/amd64";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    proc = build(project, debian_rootfs, env={"AIRBUILD_DOCKER": str(fake)}, check=False)
    assert proc.returncode == 1
    assert "Docker CLI 28.2.2 without the buildx plugin" in proc.stderr and "Dockerfile:5:" in proc.stderr


CONSECUTIVE = """\
FROM scratch
USER root
RUN mkdir -p /var/lib/apt/lists && echo listed > /var/lib/apt/lists/fake_Packages && echo one > /opt/one
ENV STEP=two
RUN cat /var/lib/apt/lists/fake_Packages > /opt/seen && echo $STEP > /opt/two
USER astro
"""


def test_consecutive_runs_see_each_other_and_rerun_together(tmp_path, debian_rootfs, airbuild_cache, docker_client,
                                                            engine_images):
    """The second RUN sees the first's apt lists, which normalisation keeps out of the first's layer; changing
    only the second runs both again in one invocation, and the first keeps its stored layer."""
    engine_images.append("bk-seq")
    project = run_project(tmp_path / "bk-seq", CONSECUTIVE)
    first = build(project, debian_rootfs)
    first_run = layer(first, "dockerfile:RUN@3")
    names = _members(first, "dockerfile:RUN@3")
    assert "opt/one" in names and not any(n.startswith("var/lib/apt/lists/") for n in names)
    assert "opt/seen" in _members(first, "dockerfile:RUN@5")
    assert first["engine"]["builds"] == 1

    (project / "Dockerfile").write_text(CONSECUTIVE.replace("> /opt/seen", "> /opt/seen-again"))
    second = build(project, debian_rootfs)
    assert layer(second, "dockerfile:RUN@3")["cached"]
    assert layer(second, "dockerfile:RUN@3")["digest"] == first_run["digest"]
    assert "opt/seen-again" in _members(second, "dockerfile:RUN@5")
    assert second["engine"]["builds"] == 1 and second["engine"]["instructions"] == 2


def _members(result: dict, rule: str) -> list[str]:
    path = Path(result["oci_layout"]) / "blobs" / layer(result, rule)["digest"].replace(":", "/")
    with tarfile.open(path) as archive:
        return archive.getnames()


USES_PROJECT = """\
FROM scratch
USER root
ARG FLAVOUR
RUN --mount=type=secret,id=netrc sh include/tools/setup.sh && test -s /run/secrets/netrc
USER astro
"""


def test_run_sees_the_project_files_it_names(tmp_path, debian_rootfs, airbuild_cache, docker_client, engine_images):
    """Astro runs the Dockerfile after its ONBUILD `COPY . .`: a RUN naming include/tools sees those files, and
    only their changes run it again. Build args and (env) secrets from astro.yaml."""
    engine_images.append("bk-files")
    project = run_project(tmp_path / "bk-files", USES_PROJECT)
    tools = project / "include" / "tools"
    tools.mkdir()
    (tools / "setup.sh").write_text('echo "$FLAVOUR $(cat include/tools/version)" > /opt/tool-version\n')
    (tools / "version").write_text("1.0\n")
    (project / "astro.yaml").write_text("build_args:\n  FLAVOUR: vanilla\nsecrets:\n  - {id: netrc, env: BK_NETRC}\n")
    set_age(project, 3600)
    env = {"BK_NETRC": SECRET}
    first = build(project, debian_rootfs, env=env)
    run_layer = layer(first, "dockerfile:RUN@4")
    assert "usr/local/airflow/include/tools/setup.sh" not in _members(first, "dockerfile:RUN@4"), \
        "the files it uses are not part of its layer (the project-files layer carries them)"
    content = _file(first, "dockerfile:RUN@4", "opt/tool-version")
    assert content == b"vanilla 1.0\n"

    (project / "include" / "data.csv").write_text("a,b\n5,6\n")
    other = build(project, debian_rootfs, env=env)
    assert layer(other, "dockerfile:RUN@4")["cached"], "a file the RUN does not name changes nothing for it"
    assert other["engine"] is None

    (tools / "version").write_text("2.0\n")
    changed = build(project, debian_rootfs, env=env)
    assert layer(changed, "dockerfile:RUN@4")["reason"] == "changed: include/tools/version"
    assert _file(changed, "dockerfile:RUN@4", "opt/tool-version") == b"vanilla 2.0\n"
    assert layer(changed, "dockerfile:RUN@4")["digest"] != run_layer["digest"]
    _assert_secret_nowhere(SECRET, [airbuild_cache, project])


def _file(result: dict, rule: str, name: str) -> bytes:
    path = Path(result["oci_layout"]) / "blobs" / layer(result, rule)["digest"].replace(":", "/")
    with tarfile.open(path) as archive:
        return archive.extractfile(name).read()


def test_a_secret_file_the_image_would_carry_is_refused(tmp_path, debian_rootfs, airbuild_cache):
    project = run_project(tmp_path / "bk-leak")
    (project / "include" / "token").write_text(SECRET)
    proc = build(project, debian_rootfs, "--secret", f"id=token,src={project / 'include' / 'token'}", check=False)
    assert proc.returncode == 2
    assert "secret 'token': include/token is part of the project's build context" in proc.stderr
    assert not (airbuild_cache / "layers").exists() or not list((airbuild_cache / "layers").glob("*.json"))


def test_native_backend_in_the_manifest(tmp_path, debian_rootfs, airbuild_cache):
    project = run_project(tmp_path / "bk-native")
    (project / "astro.yaml").write_text("backend: native\n")
    proc = build(project, debian_rootfs, check=False)
    assert proc.returncode == 2 and "Dockerfile:5: RUN needs a container to run in" in proc.stderr
    proc = build(project, debian_rootfs, "--backend", "buildkit", env={"DOCKER_HOST": "unix:///nonexistent"},
                 check=False)
    assert proc.returncode == 1 and "none is reachable" in proc.stderr, "--backend overrides the manifest"


EVERY_LAYER = """\
FROM scratch
USER root
RUN useradd --uid 4444 copier
COPY --chown=copier include/data.csv /opt/data.csv
COPY include /opt/include
WORKDIR /opt/work
RUN ls /opt/include > listing
USER astro
"""


def test_buildkit_backend_builds_every_dockerfile_layer(tmp_path, debian_rootfs, airbuild_cache, docker_client,
                                                        engine_images):
    """`--backend buildkit`: COPY runs in BuildKit too (here with --chown to a user a RUN made, which the native
    COPY could not resolve); project files and DAGs stay native. The context keeps airbuild's modes."""
    engine_images.append("bk-all")
    project = run_project(tmp_path / "bk-all", EVERY_LAYER)
    (project / "include" / "run.sh").chmod(0o700)
    archive = tmp_path / "image.tar"
    result = build(project, debian_rootfs, "--backend", "buildkit", "--archive", archive)
    assert [l["rule"] for l in result["layers"]] == ["base", "dockerfile:RUN@3", "dockerfile:COPY@4",
                                                     "dockerfile:COPY@5", "dockerfile:RUN@7", "project-files", "dags"]
    assert result["engine"]["builds"] == 1 and result["engine"]["instructions"] == 4
    ref = f"bk-all:{result['tag']}"
    engine_images.append(ref)
    docker_client("load", "-i", archive)
    shown = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                          "stat -c '%U %a' /opt/data.csv /opt/include/run.sh && cat /opt/work/listing").stdout
    assert shown.splitlines()[:2] == ["copier 644", "root 755"]
    assert "nested" in shown.splitlines()[2:]

    (project / "include" / "data.csv").write_text("a,b\n7,8\n")
    edited = build(project, debian_rootfs, "--backend", "buildkit")
    assert [l["rule"] for l in edited["layers"] if not l["cached"]] == [
        "dockerfile:COPY@4", "dockerfile:COPY@5", "dockerfile:RUN@7", "project-files", "dags"]
    assert layer(edited, "dockerfile:COPY@4")["reason"] == "changed: include/data.csv"
    assert edited["engine"]["builds"] == 1
