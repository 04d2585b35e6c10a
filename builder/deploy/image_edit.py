"""Edit a built image at one rule's layer: put a new layer in its place, or take it out.

A layer airbuild made is found by its history entry (`created_by` = "airbuild RULE: ..."). The
config's `diff_ids` and `history` follow the manifest's `layers`; the new config and manifest go
into the store, and the new manifest's digest is returned. Nothing else of the image changes, so
the result is as reproducible as the image it came from.
"""

from __future__ import annotations

import copy
import json

from builder.common.errors import BuildError, InputError
from builder.oci.descriptors import CONFIG_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, canonical_json, descriptor
from builder.registry.reference import Reference
from builder.store.store import LayerRecord, Store

DOCKER_GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _layer_history(config: dict) -> list[dict]:
    """The history entries that made layers, in layer order (the same dict objects as in the config)."""
    return [h for h in config.get("history", []) if not h.get("empty_layer")]


def rule_layer_index(manifest: dict, config: dict, rule: str) -> int | None:
    """Where the layer `rule` made is in the image, or None when it has none (or its history is unusable)."""
    history = _layer_history(config)
    if len(history) != len(manifest["layers"]):
        return None
    return next((i for i, h in enumerate(history) if h.get("created_by", "").startswith(f"airbuild {rule}:")),
                None)


def _store_image(store: Store, manifest: dict, config: dict) -> str:
    config_bytes = canonical_json(config)
    manifest["config"] = descriptor(manifest["config"].get("mediaType", CONFIG_MEDIA_TYPE),
                                    store.put_blob(config_bytes), len(config_bytes))
    manifest.setdefault("mediaType", MANIFEST_MEDIA_TYPE)
    return store.put_blob(canonical_json(manifest))


def splice_layer(store: Store, manifest: dict, config: dict, record: LayerRecord, created_by: str,
                 where: Reference, rule: str) -> str:
    """Put `record` in place of the image's `rule` layer; returns the new manifest's digest (in the store)."""
    config, manifest = copy.deepcopy(config), copy.deepcopy(manifest)
    index = rule_layer_index(manifest, config, rule)
    if index is None:
        raise InputError(f"--dags: {where} has no {rule} layer made by airbuild; run a full deploy first")
    config["rootfs"]["diff_ids"][index] = record.diff_id
    _layer_history(config)[index]["created_by"] = created_by
    media_type = record.media_type
    if manifest.get("mediaType") == DOCKER_MANIFEST_MEDIA_TYPE:
        if not media_type.endswith("+gzip"):
            raise BuildError(f"--dags: {where} is a Docker image, which cannot carry a {media_type} layer")
        media_type = DOCKER_GZIP_LAYER
    manifest["layers"][index] = descriptor(media_type, record.digest, record.size)
    return _store_image(store, manifest, config)


def drop_layer(store: Store, manifest_digest: str, rule: str) -> tuple[str, LayerRecord | None]:
    """The image in the store without its `rule` layer, and that layer; the image as it is when it has none."""
    manifest = json.loads(store.read_blob(manifest_digest))
    config = json.loads(store.read_blob(manifest["config"]["digest"]))
    index = rule_layer_index(manifest, config, rule)
    if index is None:
        return manifest_digest, None
    taken = manifest["layers"].pop(index)
    diff_id = config["rootfs"]["diff_ids"].pop(index)
    entry = _layer_history(config)[index]
    config["history"] = [h for h in config["history"] if h is not entry]
    return _store_image(store, manifest, config), LayerRecord(diff_id, taken["digest"], taken["size"],
                                                              taken["mediaType"])
