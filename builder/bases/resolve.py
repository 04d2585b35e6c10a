"""Resolve the base image (manifest `base`, `--base`, or the Dockerfile's FROM) into store blobs.

One module per source: a registry reference (bases.registry), an OCI image layout directory
(bases.layout), a docker-archive or OCI tarball (bases.archive), a root-filesystem tarball
(bases.rootfs), a base built from Debian's packages (bases.debian), or `scratch`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.bases.image import BaseImage, check_platform, scratch
from builder.bases.layout import from_oci_layout
from builder.bases.rootfs import cached_by_stat
from builder.common.errors import InputError
from builder.layers.compress import Codec
from builder.oci.descriptors import Platform
from builder.project.lock import BasePin, LockState
from builder.project.manifest import BaseSource
from builder.store.store import Store

__all__ = ["BaseImage", "resolve_base", "scratch"]


def resolve_base(source: BaseSource | None, from_ref: str | None, project: Path, store: Store,
                 platform: Platform, codec: Codec, lock: LockState | None = None, epoch: int = 0,
                 pinned: BasePin | None = None, insecure: frozenset[str] = frozenset(),
                 workdir: str = "/usr/local/airflow", read_only: bool = False) -> BaseImage:
    """`lock`: pins for a `debian` base; `pinned`: the lock's base, for --locked (a registry tag
    resolves to its digest, wherever the tag went since); `insecure`: registries (host:port) that
    may be reached over plain HTTP; `workdir`: the project's, AIRFLOW_HOME of a `debian` base;
    `read_only` (a plan): a registry base without its layer blobs, a `debian` base only if built
    (NotLocal otherwise). A local file's base is read either way: its digest is the hash of its bytes."""
    if source is None:
        if from_ref is None:
            raise InputError("no base image: add a Dockerfile with FROM, or `base:` to astro.yaml")
        if from_ref == "scratch":
            return scratch(platform)
        source = BaseSource(image=from_ref)
    if source.kind == "debian":
        # The Debian stack (indexes, .debs, maintainer scripts): loaded only for a base built from packages.
        from builder.bases.debian import debian_base

        return debian_base(source.debian, project, store, platform, codec, lock, epoch, workdir, read_only)
    location = source.location
    if source.kind == "image":
        # The registry client (httpx): loaded only for a base in a registry.
        from builder.bases.registry import from_registry

        base = from_registry(location, store, platform, pinned, insecure, layers=not read_only)
    elif source.kind == "oci":
        base = from_oci_layout(project, location, store, platform)
    else:
        path = (project / location).resolve()
        if not path.is_file():
            raise InputError(f"base {source.kind} {location!r}: no such file ({path})")
        base = dataclasses.replace(cached_by_stat(store, source.kind, path, platform, codec),
                                   source_files=(str(path),))
    check_platform(base, platform)
    return base
