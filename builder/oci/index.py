"""An image index (OCI index or Docker manifest list) resolved to the one manifest for a platform."""

from __future__ import annotations

from typing import Callable

from builder.common.errors import InputError
from builder.oci.descriptors import DOCKER_LIST_MEDIA_TYPE, INDEX_MEDIA_TYPE, Platform

INDEX_TYPES = (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)


def platform_entry(index: dict, platform: Platform, where: str) -> dict:
    """The descriptor in `index` for `platform`; an error naming the platforms it has otherwise."""
    manifests = index.get("manifests", [])
    for entry in manifests:
        if platform.matches(entry.get("platform", {})):
            return entry
    found = sorted({"/".join(filter(None, (m.get("platform", {}).get(k) for k in ("os", "architecture", "variant"))))
                    for m in manifests})
    raise InputError(f"{where} has no image for {platform} (it has: {', '.join(found) or 'nothing'}); "
                     "set `platform` in astro.yaml")


def manifest_for_platform(descriptor: dict, read_json: Callable[[str], dict], platform: Platform, where: str) -> dict:
    """Follow `descriptor` through nested indexes (read by digest) down to the platform's manifest."""
    while descriptor.get("mediaType") in INDEX_TYPES:
        descriptor = platform_entry(read_json(descriptor["digest"]), platform, where)
    return descriptor
