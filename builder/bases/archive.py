"""A base from a tarball: a docker-archive (`docker save`) or an OCI layout in a tar (`archive:FILE`)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from builder.bases.image import READ, BaseImage, from_config, import_blob, verified
from builder.bases.layout import pick_manifest
from builder.common.errors import InputError
from builder.oci.descriptors import TAR_MEDIA_TYPE
from builder.store.store import Store


def import_archive(store: Store, path: Path) -> BaseImage:
    try:
        archive = tarfile.open(path)
    except tarfile.TarError as exc:
        raise InputError(f"base archive {path}: not a tar file ({exc})") from None
    with archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            if name not in members:
                raise InputError(f"base archive {path}: missing {name}")
            return archive.extractfile(members[name]).read()

        if "index.json" in members:
            return _import_oci_archive(store, path, members, archive, read)
        if "manifest.json" in members:
            return _import_docker_archive(store, path, members, archive, read)
    raise InputError(f"base archive {path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)")


def _import_oci_archive(store, path, members, archive, read) -> BaseImage:
    index = json.loads(read("index.json"))
    desc = pick_manifest(index.get("manifests", []), None, None, str(path))

    def blob(dig: str) -> bytes:
        return verified(read("blobs/" + dig.replace(":", "/")), dig, str(path))

    manifest = json.loads(blob(desc["digest"]))
    config_bytes = blob(manifest["config"]["digest"])
    for layer in manifest["layers"]:
        if not store.has_blob(layer["digest"], layer["size"]):
            name = "blobs/" + layer["digest"].replace(":", "/")
            if name not in members:
                raise InputError(f"base archive {path}: missing {name}")
            import_blob(store, archive.extractfile(members[name]), layer["digest"], str(path))
    return from_config(f"archive:{path.name}", desc["digest"], config_bytes, manifest["layers"], store)


def _import_docker_archive(store, path, members, archive, read) -> BaseImage:
    entries = json.loads(read("manifest.json"))
    if len(entries) != 1:
        raise InputError(f"base archive {path}: holds {len(entries)} images; save exactly one")
    entry = entries[0]
    config_bytes = read(entry["Config"])
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    layers = []
    for name in entry["Layers"]:
        if name not in members:
            raise InputError(f"base archive {path}: missing {name}")
        with store.blob_writer() as blob:
            handle = archive.extractfile(members[name])
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
