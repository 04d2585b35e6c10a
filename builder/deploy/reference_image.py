"""The image `airbuild verify` compares with: in a registry, an OCI layout directory or an image tarball.

Its manifest and config go into the given store at once; a registry image's layers only when
asked (`fetch`), so a comparison downloads just the layer it needs to look into. Everything read
is checked against its digest (builder.registry.pull, builder.bases.layout / archive).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from builder.bases.archive import import_archive
from builder.bases.image import BaseImage, from_config
from builder.bases.layout import from_oci_layout, split_layout_reference
from builder.common.errors import InputError
from builder.oci.descriptors import Platform
from builder.oci.files import tarball
from builder.registry.connect import open_client
from builder.registry.manifests import Repository
from builder.registry.pull import Puller
from builder.registry.reference import parse_reference
from builder.registry.referrers import Referrers
from builder.store.store import LayerRecord, Store


@dataclass(frozen=True)
class ReferenceImage:
    name: str                              # as the user wrote it
    digest: str                            # its image manifest's digest (a docker-archive's: its config's)
    digest_of: str                         # "manifest" or "config": what `digest` names
    config: dict
    layers: tuple[LayerRecord, ...]
    fetch: Callable[[LayerRecord], None]   # brings one of its layer blobs into the store
    # the documents of its referrers of one artifact type (a registry's; None: a layout or tarball has none here)
    referrer_documents: Callable[[str], list[bytes]] | None = None


@contextlib.contextmanager
def open_reference(text: str, store: Store, platform: Platform, insecure: bool = False,
                   ca_bundle: Path | None = None) -> Iterator[ReferenceImage]:
    """REF as `verify` takes it: `oci:DIR[:TAG|@DIGEST]`, `archive:FILE`, an existing directory (a layout) or
    file (a tarball), else a registry reference `host/repo:tag` or `host/repo@sha256:...`."""
    kind, location = _kind(text)
    if kind == "oci":
        path = Path(split_layout_reference(location)[0])
        if not (path / "index.json").is_file():
            raise InputError(f"{text}: {path} is not an OCI image layout (no index.json)")
        yield _local(text, from_oci_layout(Path.cwd(), location, store, platform), "manifest")
        return
    if kind == "archive":
        if not Path(location).is_file():
            raise InputError(f"{text}: no such image tarball")
        with tarball(Path(location), text) as files:
            oci = files.has("index.json")
        # A docker-archive has no manifest: its digest is its config's (builder.bases.archive).
        yield _local(text, import_archive(store, Path(location)), "manifest" if oci else "config")
        return
    ref = parse_reference(location)
    with open_client(ref.registry, insecure=insecure, ca_bundle=ca_bundle, env_registry=ref.registry) as client:
        puller = Puller(client, store, what="image")
        pulled = puller.pull(ref, platform, layers=False)
        image = from_config(str(ref), pulled.manifest_digest, pulled.config_bytes, pulled.manifest["layers"], store)
        referrers = Referrers(Repository(client, ref.repository))

        def documents(artifact_type: str) -> list[bytes]:
            return [referrers.document(entry)[1] for entry in referrers.list(pulled.manifest_digest, artifact_type)]

        yield ReferenceImage(text, pulled.manifest_digest, "manifest", image.config, image.layers,
                             lambda layer: puller.fetch_layers(ref, [layer]), documents)


def _kind(text: str) -> tuple[str, str]:
    for prefix in ("oci", "archive"):
        if text.startswith(prefix + ":"):
            return prefix, text[len(prefix) + 1:]
    if Path(text).is_file():
        return "archive", text
    if Path(split_layout_reference(text)[0]).is_dir():
        return "oci", text
    if text.startswith(("/", "./", "../")):
        raise InputError(f"{text}: no such OCI layout directory or image tarball")
    return "image", text


def _local(text: str, image: BaseImage, digest_of: str) -> ReferenceImage:
    return ReferenceImage(text, image.digest, digest_of, image.config, image.layers, lambda layer: None)
