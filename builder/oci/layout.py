"""Write a built image out: an OCI image layout directory, and a tarball for `docker load` and OCI tools."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from builder.common.atomic import atomic_write_bytes, atomic_writer
from builder.oci.image import BuiltImage
from builder.layers.tar import LayerItem, write_tar
from builder.oci.descriptors import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME, canonical_json, descriptor
from builder.store.store import Store

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def _index(image: BuiltImage) -> bytes:
    manifest = descriptor(MANIFEST_MEDIA_TYPE, image.manifest_digest, image.manifest_size, {REF_NAME: image.tag})
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [manifest]})


def _blob_digests(image: BuiltImage) -> list[str]:
    return [image.manifest_digest, image.config_digest] + [r.digest for r in image.layers]


def write_layout(store: Store, image: BuiltImage, directory: Path) -> None:
    """Make `directory` an OCI image layout holding exactly `image` (blobs hard-linked from the store)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for digest in _blob_digests(image):
        name = digest.removeprefix("sha256:")
        wanted.add(name)
        target = blobs / name
        if target.exists():
            continue
        _link_or_copy(store.blob_path(digest), target)
    atomic_write_bytes(directory / "oci-layout", OCI_LAYOUT, fsync=False)
    atomic_write_bytes(directory / "index.json", _index(image))
    for stale in blobs.iterdir():  # the layout holds this image only: drop an earlier build's blobs
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_archive(store: Store, image: BuiltImage, path: Path, repo_tag: str) -> None:
    """One tarball that `docker load` (manifest.json) and OCI tools (index.json + blobs) both accept."""
    layer_paths = [f"blobs/sha256/{r.digest.removeprefix('sha256:')}" for r in image.layers]
    docker_manifest = json.dumps([{
        "Config": f"blobs/sha256/{image.config_digest.removeprefix('sha256:')}",
        "RepoTags": [repo_tag],
        "Layers": layer_paths,
    }], separators=(",", ":")).encode()
    items = [
        LayerItem("blobs", "dir", 0o755),
        LayerItem("blobs/sha256", "dir", 0o755),
        LayerItem("index.json", "file", 0o644, size=len(index := _index(image)), data=index),
        LayerItem("manifest.json", "file", 0o644, size=len(docker_manifest), data=docker_manifest),
        LayerItem("oci-layout", "file", 0o644, size=len(OCI_LAYOUT), data=OCI_LAYOUT),
    ]
    seen = set()
    for digest in _blob_digests(image):
        if digest in seen:
            continue
        seen.add(digest)
        source = store.blob_path(digest)
        items.append(LayerItem(f"blobs/sha256/{digest.removeprefix('sha256:')}", "file", 0o644,
                               size=source.stat().st_size, source=str(source),
                               digest=digest.removeprefix("sha256:")))
    items.sort(key=lambda i: i.path)
    with atomic_writer(path) as handle:
        write_tar(items, handle.write, 0)
