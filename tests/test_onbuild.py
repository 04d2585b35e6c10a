"""A base image's ONBUILD triggers: the Astro runtime's are replaced by rules, any other one runs at its place
(RUN through BuildKit against the real dockerd), none is dropped silently, and the output says which is which."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from builder.oci.descriptors import TAR_MEDIA_TYPE, canonical_json
from tests.helpers import run_cli
from tests.projects import make_project, set_age

ASTRO_TRIGGERS = [
    "LABEL io.astronomer.docker.airflow.onbuild=true",
    "COPY packages.txt .",
    "USER root",
    "RUN /usr/local/bin/install-system-packages",
    "USER astro",
    "COPY requirements.txt .",
    "RUN /usr/local/bin/install-python-dependencies",
    "COPY --chown=astro:0 . .",
]
# Besides Astro's: a RUN between its USER switches (so it runs as root, as under docker build) and an ENV.
CUSTOM_TRIGGERS = ASTRO_TRIGGERS[:4] + ["RUN touch /onbuild-ran && id -un > /onbuild-user"] + ASTRO_TRIGGERS[4:] + \
    ["ENV FROM_ONBUILD=yes"]


def runtime_like_layout(root: Path, rootfs: Path) -> Path:
    """An OCI layout of the Debian rootfs with two images, `astro` and `custom`, whose configs carry those triggers."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    layer_digest = hashlib.sha256(rootfs.read_bytes()).hexdigest()
    shutil.copyfile(rootfs, blobs / layer_digest)
    manifests = []
    for tag, triggers in (("astro", ASTRO_TRIGGERS), ("custom", CUSTOM_TRIGGERS)):
        config = canonical_json({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "AIRFLOW_HOME=/usr/local/airflow"],
                       "User": "astro", "WorkingDir": "/usr/local/airflow", "OnBuild": triggers},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]},
            "history": [{"created_by": "a runtime-like base"}]})
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
            "layers": [{"mediaType": TAR_MEDIA_TYPE, "digest": "sha256:" + layer_digest,
                        "size": rootfs.stat().st_size}]})
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
                          "annotations": {"org.opencontainers.image.ref.name": tag}})
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return root


@pytest.fixture(scope="module")
def layout(module_tmp, debian_rootfs) -> Path:
    return runtime_like_layout(module_tmp("onbuild") / "runtime", debian_rootfs)


def build(project: Path, base: str, *extra: str, check: bool = True):
    proc = run_cli(["build", project, "--base", base, *extra], check=check)
    return json.loads(proc.stdout) if check and "--json" in extra else proc


def test_astro_triggers_are_replaced_by_rules(tmp_path, airbuild_cache, layout):
    project = make_project(tmp_path / "p")
    result = build(project, f"oci:{layout}:astro", "--backend", "native", "--json")
    handled = {entry["trigger"]: (entry["handled"], entry.get("rules") or entry.get("how")) for entry in result["onbuild"]}
    assert handled == {
        "LABEL io.astronomer.docker.airflow.onbuild=true": ("ran", "config"),
        "COPY packages.txt .": ("replaced", ["system-packages"]),
        "USER root": ("ran", "config"),
        "RUN /usr/local/bin/install-system-packages": ("replaced", ["system-packages"]),
        "USER astro": ("ran", "config"),
        "COPY requirements.txt .": ("replaced", ["python-requirements"]),
        "RUN /usr/local/bin/install-python-dependencies": ("replaced", ["python-requirements"]),
        "COPY --chown=astro:0 . .": ("replaced", ["project-files", "dags"]),
    }
    assert [entry["index"] for entry in result["onbuild"]] == list(range(1, 9))
    assert [l["rule"] for l in result["layers"]] == ["base", "project-files", "dags"]
    config = json.loads(run_cli(["inspect", result["oci_layout"], "--json"]).stdout)["config"]
    assert "OnBuild" not in config and config["User"] == "astro"
    assert config["Labels"]["io.astronomer.docker.airflow.onbuild"] == "true"
    table = build(project, f"oci:{layout}:astro", "--backend", "native").stdout
    assert "note: base image ONBUILD 2 `COPY packages.txt .`: replaced by rule system-packages" in table
    assert "note: base image ONBUILD 3 `USER root`: applied to the image config" in table


def test_other_triggers_run_at_their_place(tmp_path, airbuild_cache, layout, docker_client):
    project = make_project(tmp_path / "onbuild-run")
    set_age(project, 3600)
    archive = tmp_path / "image.tar"
    result = build(project, f"oci:{layout}:custom", "--archive", archive, "--json")
    assert [l["rule"] for l in result["layers"]] == ["base", "dockerfile:ONBUILD-RUN#5", "project-files", "dags"]
    ran = [entry for entry in result["onbuild"] if entry["handled"] == "ran"]
    assert [(e["index"], e["how"], e["step"]) for e in ran] == [
        (1, "config", None), (3, "config", None), (5, "BuildKit", "dockerfile:ONBUILD-RUN#5"), (6, "config", None),
        (10, "config", None)]
    assert "base image ONBUILD 5 `RUN touch /onbuild-ran && id -un > /onbuild-user`: ran as layer " \
           "dockerfile:ONBUILD-RUN#5 (BuildKit)" in result["notes"]
    layer = next(l for l in result["layers"] if l["rule"] == "dockerfile:ONBUILD-RUN#5")
    with tarfile.open(Path(result["oci_layout"]) / "blobs" / layer["digest"].replace(":", "/")) as archive_tar:
        assert {"onbuild-ran", "onbuild-user"} <= set(archive_tar.getnames())

    ref = f"onbuild-run:{result['tag']}"
    docker_client("load", "-i", archive)
    try:
        shown = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                              "cat /onbuild-user; id -un; echo $FROM_ONBUILD; ls dags").stdout.split()
    finally:
        docker_client("image", "rm", "-f", ref, check=False)
        parents = docker_client("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "airbuild-parent/onbuild-run",
                                check=False).stdout.split()
        if parents:
            docker_client("image", "rm", *parents, check=False)
    assert shown[:3] == ["root", "astro", "yes"], "the RUN ran as root between Astro's USER switches"
    assert "etl.py" in shown

    native = build(project, f"oci:{layout}:custom", "--backend", "native", check=False)
    assert native.returncode == 2
    assert "the base image's ONBUILD trigger 5 `RUN touch /onbuild-ran && id -un > /onbuild-user`" in native.stderr
    assert "native backend cannot run it" in native.stderr
