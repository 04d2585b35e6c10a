"""Edit a built image at one rule's layers: put new layers in their place, or take them out.

A layer airbuild made is found by its history entry (`created_by` = "airbuild RULE: ...", one
entry per layer when the rule splits its files into several). A rule's layers are consecutive. The
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


def rule_layer_indices(manifest: dict, config: dict, rule: str) -> list[int] | None:
    """Where the layers `rule` made are in the image (consecutive), or None when it has none (or its history is
    unusable)."""
    history = _layer_history(config)
    if len(history) != len(manifest["layers"]):
        return None
    found = [i for i, h in enumerate(history) if h.get("created_by", "").startswith(f"airbuild {rule}:")]
    return found or None


def _store_image(store: Store, manifest: dict, config: dict) -> str:
    config_bytes = canonical_json(config)
    manifest["config"] = descriptor(manifest["config"].get("mediaType", CONFIG_MEDIA_TYPE),
                                    store.put_blob(config_bytes), len(config_bytes))
    manifest.setdefault("mediaType", MANIFEST_MEDIA_TYPE)
    return store.put_blob(canonical_json(manifest))


def splice_layers(store: Store, manifest: dict, config: dict, layers: list[tuple[LayerRecord, str]],
                  where: Reference, rule: str) -> str:
    """Put `layers` (records with their `created_by`) in place of the image's `rule` layers, however many it had;
    returns the new manifest's digest (in the store)."""
    config, manifest = copy.deepcopy(config), copy.deepcopy(manifest)
    indices = rule_layer_indices(manifest, config, rule)
    if indices is None:
        raise InputError(f"--dags: {where} has no {rule} layer made by airbuild; run a full deploy first")
    first, end = indices[0], indices[-1] + 1
    docker = manifest.get("mediaType") == DOCKER_MANIFEST_MEDIA_TYPE
    descriptors = []
    for record, _ in layers:
        media_type = record.media_type
        if docker:
            if not media_type.endswith("+gzip"):
                raise BuildError(f"--dags: {where} is a Docker image, which cannot carry a {media_type} layer")
            media_type = DOCKER_GZIP_LAYER
        descriptors.append(descriptor(media_type, record.digest, record.size))
    history = _layer_history(config)
    entries = [{**history[first], "created_by": created_by} for _, created_by in layers]
    position = config["history"].index(history[first])
    config["history"] = [h for h in config["history"] if not any(h is history[i] for i in indices)]
    config["history"][position:position] = entries
    config["rootfs"]["diff_ids"][first:end] = [record.diff_id for record, _ in layers]
    manifest["layers"][first:end] = descriptors
    return _store_image(store, manifest, config)


def drop_layers(store: Store, manifest_digest: str, rule: str) -> tuple[str, list[LayerRecord]]:
    """The image in the store without its `rule` layers, and those layers; the image as it is when it has none."""
    manifest = json.loads(store.read_blob(manifest_digest))
    config = json.loads(store.read_blob(manifest["config"]["digest"]))
    indices = rule_layer_indices(manifest, config, rule)
    if indices is None:
        return manifest_digest, []
    history = _layer_history(config)
    taken = []
    for index in indices:
        layer = manifest["layers"][index]
        taken.append(LayerRecord(config["rootfs"]["diff_ids"][index], layer["digest"], layer["size"],
                                 layer["mediaType"]))
    keep = [i for i in range(len(manifest["layers"])) if i not in indices]
    manifest["layers"] = [manifest["layers"][i] for i in keep]
    config["rootfs"]["diff_ids"] = [config["rootfs"]["diff_ids"][i] for i in keep]
    config["history"] = [h for h in config["history"] if not any(h is history[i] for i in indices)]
    return _store_image(store, manifest, config), taken
