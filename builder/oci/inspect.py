"""Read a built image back (OCI layout directory or tarball) for `airbuild inspect`."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any, Callable

from builder.common.errors import InputError
from builder.oci.descriptors import REF_NAME


def inspect_image(path: Path) -> dict[str, Any]:
    if path.is_dir():
        if not (path / "index.json").is_file():
            raise InputError(f"{path} is not an OCI image layout (no index.json)")
        return _describe(lambda name: (path / name).read_bytes(), str(path))
    if path.is_file():
        try:
            with tarfile.open(path) as archive:
                members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

                def read(name: str) -> bytes:
                    if name not in members:
                        raise InputError(f"{path}: missing {name}")
                    return archive.extractfile(members[name]).read()

                return _describe(read, str(path))
        except tarfile.TarError as exc:
            raise InputError(f"{path}: not an image tarball ({exc})") from None
    raise InputError(f"{path}: no such OCI layout or image tarball")


def _describe(read: Callable[[str], bytes], where: str) -> dict[str, Any]:
    def blob(digest: str) -> bytes:
        data = read("blobs/" + digest.replace(":", "/"))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise InputError(f"{where}: blob {digest} does not match its digest")
        return data

    index = json.loads(read("index.json"))
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
