"""What the image inherits from its base, user rules, and codecs, on small hand-made bases."""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from pathlib import Path

import zstandard

from builder.oci.descriptors import canonical_json
from tests.helpers import run_cli
from tests.projects import make_project
from tests.test_bases import tiny_rootfs


def write_layout(root: Path, rootfs_tar_gz: Path, config: dict) -> Path:
    """An OCI layout with one gzip layer and the given image config: a base like a runtime image."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    layer = rootfs_tar_gz.read_bytes()
    config = dict(config, rootfs={"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(zlib.decompress(layer, 31)).hexdigest()]})
    config_bytes = canonical_json(config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer),
                    "size": len(layer)}]})
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "12.1.0"}}]}))
    return root


RUNTIME_CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-05-01T12:00:00Z",
    "config": {"Env": ["PATH=/usr/bin:/bin", "AIRFLOW_HOME=/usr/local/airflow"], "User": "astro",
               "WorkingDir": "/usr/local/airflow", "Entrypoint": ["tini", "--", "/entrypoint"],
               "Cmd": ["airflow", "--help"], "Labels": {"io.astronomer.runtime": "12.1.0"},
               "OnBuild": ["COPY packages.txt .", "RUN /usr/local/bin/install-system-packages"]},
    "history": [{"created": "2024-05-01T12:00:00Z", "created_by": "runtime base"}],
}


def test_config_inherits_the_base_and_drops_onbuild(tmp_path, airbuild_cache):
    layout = write_layout(tmp_path / "runtime", _rootfs(tmp_path), RUNTIME_CONFIG)
    project = make_project(tmp_path / "p")
    (project / "Dockerfile").write_text("FROM quay.io/astronomer/astro-runtime:12.1.0\nENV EXTRA=1\n")
    result = json.loads(run_cli(["build", project, "--base", f"oci:{layout}:12.1.0", "--json"],
                                env={"SOURCE_DATE_EPOCH": "1700000000"}).stdout)
    info = json.loads(run_cli(["inspect", result["oci_layout"], "--json"]).stdout)
    config = info["config"]
    assert config["Env"] == ["PATH=/usr/bin:/bin", "AIRFLOW_HOME=/usr/local/airflow", "EXTRA=1"]
    assert (config["User"], config["WorkingDir"]) == ("astro", "/usr/local/airflow")
    assert (config["Entrypoint"], config["Cmd"]) == (["tini", "--", "/entrypoint"], ["airflow", "--help"])
    assert config["Labels"] == {"io.astronomer.runtime": "12.1.0"}
    assert "OnBuild" not in config
    assert info["created"] == "2023-11-14T22:13:20Z"
    image_config = json.loads((Path(result["oci_layout"]) / "blobs" / info["config_digest"].replace(":", "/")).read_text())
    history = image_config["history"]
    assert history[0] == RUNTIME_CONFIG["history"][0], "the base's history is kept"
    assert all(h["created"] == "2023-11-14T22:13:20Z" for h in history[1:])
    assert [h.get("empty_layer", False) for h in history[1:]] == [True, False, False]
    # The base's USER (astro) owns the project files, resolved through the base's /etc/passwd.
    dags = Path(result["oci_layout"]) / "blobs" / result["layers"][-1]["digest"].replace(":", "/")
    with tarfile.open(dags) as archive:
        assert archive.getmember("usr/local/airflow/dags/etl.py").uid == 50000


def test_user_rules_add_and_reorder_layers(tmp_path, airbuild_cache):
    _rootfs(tmp_path)
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text(
        "base:\n  rootfs: ../rootfs.tar.gz\n"
        "layers:\n"
        "  - dags\n"
        "  - name: sql\n"
        "    action: files\n"
        "    source: include/nested\n"
        "    dest: '/opt/{{ name }}/sql'\n"
        "  - project-files\n")
    result = json.loads(run_cli(["build", project, "--json"]).stdout)
    assert [l["rule"] for l in result["layers"]] == ["base", "dags", "sql", "project-files"]
    with tarfile.open(Path(result["oci_layout"]) / "blobs" / result["layers"][2]["digest"].replace(":", "/")) as sql:
        assert sql.getnames() == ["opt", "opt/p", "opt/p/sql", "opt/p/sql/deep", "opt/p/sql/deep/query.sql"]


def test_zstd_layers_have_the_same_diff_ids_as_gzip(tmp_path, airbuild_cache):
    _rootfs(tmp_path)
    project = make_project(tmp_path / "p")
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    gzip_build = json.loads(run_cli(["build", project, "--json"]).stdout)
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\ncompression:\n  codec: zstd\n  level: 5\n")
    zstd_build = json.loads(run_cli(["build", project, "--json"]).stdout)
    # astro.yaml itself is a project file (it changed); the base and DAG layers did not.
    for index in (0, -1):
        assert zstd_build["layers"][index]["diff_id"] == gzip_build["layers"][index]["diff_id"]
        assert zstd_build["layers"][index]["digest"] != gzip_build["layers"][index]["digest"]
    assert zstd_build["manifest_digest"] != gzip_build["manifest_digest"]
    blob = (Path(zstd_build["oci_layout"]) / "blobs" / zstd_build["layers"][-1]["digest"].replace(":", "/")).read_bytes()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == zstd_build["layers"][-1]["diff_id"]
    info = json.loads(run_cli(["inspect", zstd_build["oci_layout"], "--json"]).stdout)
    assert {l["media_type"] for l in info["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def _rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    tiny_rootfs(path)
    return path
