"""Assemble the image config and manifest from the base and the planned layers."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from builder.oci.config import ContainerConfig
from builder.oci.descriptors import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, canonical_json, descriptor
from builder.store.store import LayerRecord, Store


@dataclass(frozen=True)
class BuiltImage:
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layers: tuple[LayerRecord, ...]  # base first

    @property
    def tag(self) -> str:
        return "deploy-" + self.manifest_digest.removeprefix("sha256:")[:12]


def timestamp(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def assemble(store: Store, base_config: dict, base_layers: tuple[LayerRecord, ...], config: ContainerConfig,
             layers: list[LayerRecord], history: list[dict], epoch: int) -> BuiltImage:
    """The image config and manifest of `layers` over a base (its config and layers), in the store."""
    created = timestamp(epoch)
    all_layers = tuple(base_layers) + tuple(layers)
    image_config = {k: v for k, v in base_config.items() if k not in ("config", "rootfs", "history", "created",
                                                                     "container", "container_config",
                                                                     "docker_version", "author", "id", "parent")}
    image_config.update({
        "created": created,
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": [r.diff_id for r in all_layers]},
        "history": list(base_config.get("history", [])) + [{"created": created, **h} for h in history],
    })
    config_bytes = canonical_json(image_config)
    config_digest = store.put_blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, config_digest, len(config_bytes)),
        "layers": [descriptor(r.media_type, r.digest, r.size) for r in all_layers],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = store.put_blob(manifest_bytes)
    return BuiltImage(manifest_digest, len(manifest_bytes), config_digest, all_layers)
