"""Read a built image back (OCI layout directory or tarball) for `airbuild inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.common.errors import InputError
from builder.oci.descriptors import REF_NAME
from builder.oci.files import ImageFiles, image_files


def inspect_image(path: Path) -> dict[str, Any]:
    if path.is_dir() and not (path / "index.json").is_file():
        raise InputError(f"{path} is not an OCI image layout (no index.json)")
    with image_files(path, str(path)) as files:
        return _describe(files)


def _describe(files: ImageFiles) -> dict[str, Any]:
    where, blob = files.where, files.blob
    index = json.loads(files.read("index.json"))
    manifests = index.get("manifests", [])
    if not manifests:
        raise InputError(f"{where}: the index lists no image")
    desc = manifests[0]
    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layer_history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers = []
    for i, layer in enumerate(manifest["layers"]):
        layers.append({
            "digest": layer["digest"],
            "diff_id": diff_ids[i] if i < len(diff_ids) else None,
            "size": layer["size"],
            "media_type": layer["mediaType"],
            "created_by": layer_history[i].get("created_by", "") if i < len(layer_history) else "",
        })
    return {
        "source": where,
        "tag": desc.get("annotations", {}).get(REF_NAME),
        "manifest_digest": desc["digest"],
        "config_digest": manifest["config"]["digest"],
        "platform": "/".join(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p),
        "created": config.get("created"),
        "total_size": sum(layer["size"] for layer in manifest["layers"]),
        "layers": layers,
        "config": config.get("config", {}),
    }
