"""Write a built image out: an OCI image layout directory, and a tarball for `docker load` and OCI tools."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from builder.common.atomic import atomic_write_bytes, atomic_writer
from builder.common.errors import InputError
from builder.common.locks import hold_directory
from builder.oci.image import BuiltImage
from builder.layers.tar import LayerItem, write_tar
from builder.oci.descriptors import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME, canonical_json, descriptor
from builder.store.store import Store

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def _index(image: BuiltImage, others: list[dict] | None = None) -> bytes:
    manifest = descriptor(MANIFEST_MEDIA_TYPE, image.manifest_digest, image.manifest_size, {REF_NAME: image.tag})
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [*(others or []), manifest]})


def _other_images(directory: Path, image: BuiltImage) -> list[dict]:
    """The manifests an existing layout's index names, but this image (by digest or by its tag)."""
    path = directory / "index.json"
    try:
        index = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not an OCI image index ({exc}); give --oci an empty directory or a layout")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise InputError(f"{path} is not an OCI image index (no `manifests` list)")
    return [m for m in manifests if m.get("digest") != image.manifest_digest
            and (m.get("annotations") or {}).get(REF_NAME) != image.tag]


def _blob_digests(image: BuiltImage) -> list[str]:
    return [image.manifest_digest, image.config_digest] + [r.digest for r in image.layers]


def write_layout(store: Store, image: BuiltImage, directory: Path, merge: bool = False) -> None:
    """Make `directory` an OCI image layout holding exactly `image` (blobs hard-linked from the store); with
    `merge`, add `image` to the layout's index and keep its other images and their blobs.

    The index is written last: a crash at any moment leaves an index naming only blobs that are there. Two
    writers of one directory (builds of two projects given the same `--oci DIR`) take turns, so neither drops
    the other's image from the index.
    """
    def waiting() -> None:
        print(f"airbuild: another airbuild is writing the OCI layout {directory}; waiting for it", file=sys.stderr,
              flush=True)

    with hold_directory(directory, on_wait=waiting):
        _write_layout(store, image, directory, merge)


def _write_layout(store: Store, image: BuiltImage, directory: Path, merge: bool) -> None:
    others = _other_images(directory, image) if merge else []
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
    atomic_write_bytes(directory / "index.json", _index(image, others))
    if merge:
        return
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
