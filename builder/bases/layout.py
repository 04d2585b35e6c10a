"""A base from an OCI image layout directory (`oci:DIR[:TAG|@DIGEST]`): its blobs checked and copied in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from builder.bases.image import BaseImage, from_config, import_blob, malformed
from builder.common.errors import InputError
from builder.oci.descriptors import REF_NAME, Platform
from builder.oci.files import blob_name, directory
from builder.oci.index import manifest_for_platform
from builder.store.store import Store


def split_layout_reference(location: str) -> tuple[str, str | None, str | None]:
    if "@" in location:
        path, _, digest = location.partition("@")
        return path, None, digest
    head, sep, tail = location.rpartition(":")
    if sep and "/" not in tail and head:
        return head, tail, None
    return location, None, None


def from_oci_layout(project: Path, location: str, store: Store, platform: Platform) -> BaseImage:
    path_text, tag, digest = split_layout_reference(location)
    layout = (project / path_text).resolve()
    if not (layout / "index.json").is_file():
        raise InputError(f"base oci {location!r}: {layout} is not an OCI image layout (no index.json)")

    with malformed(f"base oci {location!r}"):
        return _from_layout(layout, location, tag, digest, store, platform)


def _from_layout(layout: Path, location: str, tag: str | None, digest: str | None, store: Store,
                 platform: Platform) -> BaseImage:
    files = directory(layout, f"base oci {location!r}")
    read = files.blob
    index = json.loads(files.read("index.json"))
    manifest_desc = pick_manifest(index.get("manifests", []), tag, digest, location)
    manifest_desc = manifest_for_platform(manifest_desc, lambda d: json.loads(read(d)), platform, f"base {location!r}")
    manifest = json.loads(read(manifest_desc["digest"]))
    config_bytes = read(manifest["config"]["digest"])
    layers = []
    for layer in manifest["layers"]:
        if not store.has_blob(layer["digest"], layer["size"]):
            with files.open(blob_name(layer["digest"])) as handle:
                import_blob(store, handle, layer["digest"], location)
        layers.append(layer)
    base = from_config(f"oci:{location}", manifest_desc["digest"], config_bytes, layers, store)
    return dataclasses.replace(base, source_files=(str(layout / "index.json"),))


def pick_manifest(manifests: list[dict], tag: str | None, digest: str | None, location: str) -> dict:
    if digest:
        found = [m for m in manifests if m["digest"] == digest]
    elif tag:
        found = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == tag]
    else:
        found = manifests
    if len(found) == 1:
        return found[0]
    tags = sorted(m.get("annotations", {}).get(REF_NAME, m["digest"]) for m in manifests)
    if not found:
        raise InputError(f"base oci {location!r}: no image {'tagged ' + tag if tag else digest}; "
                         f"the layout has: {', '.join(tags) or 'nothing'}")
    raise InputError(f"base oci {location!r}: the layout holds {len(found)} images ({', '.join(tags)}); "
                     "name one as DIR:TAG or DIR@sha256:...")
