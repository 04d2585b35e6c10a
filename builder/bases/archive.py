"""A base from a tarball: a docker-archive (`docker save`) or an OCI layout in a tar (`archive:FILE`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.bases.image import READ, BaseImage, from_config, import_blob, malformed
from builder.bases.layout import pick_manifest
from builder.common.errors import InputError
from builder.oci.descriptors import TAR_MEDIA_TYPE
from builder.oci.files import ImageFiles, blob_name, tarball
from builder.store.store import Store


def import_archive(store: Store, path: Path) -> BaseImage:
    with tarball(path, f"base archive {path}") as files, malformed(f"base archive {path}"):
        if files.has("index.json"):
            return _import_oci_archive(store, path, files)
        if files.has("manifest.json"):
            return _import_docker_archive(store, path, files)
    raise InputError(f"base archive {path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)")


def _import_oci_archive(store: Store, path: Path, files: ImageFiles) -> BaseImage:
    index = json.loads(files.read("index.json"))
    desc = pick_manifest(index.get("manifests", []), None, None, str(path))
    manifest = json.loads(files.blob(desc["digest"]))
    config_bytes = files.blob(manifest["config"]["digest"])
    for layer in manifest["layers"]:
        if not store.has_blob(layer["digest"], layer["size"]):
            with files.open(blob_name(layer["digest"])) as handle:
                import_blob(store, handle, layer["digest"], str(path))
    return from_config(f"archive:{path.name}", desc["digest"], config_bytes, manifest["layers"], store)


def _import_docker_archive(store: Store, path: Path, files: ImageFiles) -> BaseImage:
    entries = json.loads(files.read("manifest.json"))
    if len(entries) != 1:
        raise InputError(f"base archive {path}: holds {len(entries)} images; save exactly one")
    entry = entries[0]
    config_bytes = files.read(entry["Config"])
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    layers = []
    for name in entry["Layers"]:
        with files.open(name) as handle, store.blob_writer() as blob:
            head = handle.read(4)
            blob.write(head)
            while chunk := handle.read(READ):
                blob.write(chunk)
            digest = blob.commit()
        media_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if head[:2] == b"\x1f\x8b"
                      else "application/vnd.oci.image.layer.v1.tar+zstd" if head == b"\x28\xb5\x2f\xfd"
                      else TAR_MEDIA_TYPE)
        layers.append({"mediaType": media_type, "digest": digest, "size": blob.size})
    return from_config(f"archive:{path.name}", config_digest, config_bytes, layers, store)
