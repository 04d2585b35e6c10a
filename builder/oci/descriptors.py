"""OCI image format: media types, descriptors, and canonical JSON for configs and manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"

# Docker's layer media types name the same bytes as OCI's.
LAYER_MEDIA_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": TAR_MEDIA_TYPE,
    "application/vnd.oci.image.layer.v1.tar+gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    TAR_MEDIA_TYPE: TAR_MEDIA_TYPE,
}


def canonical_json(value: Any) -> bytes:
    """Stable bytes for a JSON document: sorted keys, no insignificant white space."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.split("/")
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else None)

    def matches(self, data: dict[str, Any]) -> bool:
        if data.get("os") != self.os or data.get("architecture") != self.architecture:
            return False
        return self.variant is None or data.get("variant") in (None, self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def descriptor(media_type: str, digest: str, size: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        out["annotations"] = annotations
    return out
