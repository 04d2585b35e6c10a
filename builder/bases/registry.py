"""A base from a registry: pulled into the store (manifest, config and, unless for a plan, layers), pinned by
digest when locked."""

from __future__ import annotations

import dataclasses

from builder.bases.image import BaseImage, from_config
from builder.project.lock import BasePin
from builder.oci.descriptors import Platform
from builder.registry.connect import open_client
from builder.registry.pull import Puller
from builder.registry.reference import parse_reference
from builder.store.store import Store


def from_registry(text: str, store: Store, platform: Platform, pinned: BasePin | None,
                  insecure: frozenset[str], layers: bool = True) -> BaseImage:
    ref = parse_reference(text)
    description = f"image:{ref}"
    if pinned is not None and pinned.source == description and ref.digest is None:
        ref = ref.pinned(pinned.digest)
    with open_client(ref.registry, insecure=ref.registry in insecure) as client:
        pulled = Puller(client, store).pull(ref, platform, layers=layers)
    base = from_config(description, pulled.digest, pulled.config_bytes, pulled.manifest["layers"], store)
    return dataclasses.replace(base, floating=ref.digest is None)
