"""Resolve the base image (manifest `base`, `--base`, or the Dockerfile's FROM) into store blobs.

Sources: a registry reference (pulled into the store by builder/registry), an OCI image
layout directory, a docker-archive or OCI tarball, a plain root-filesystem tarball, or
`scratch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from builder.layers.compress import Codec, decompressor_for
from builder.common.errors import InputError
from builder.project.lock import BasePin
from builder.project.manifest import BaseSource
from builder.oci.descriptors import (DOCKER_LIST_MEDIA_TYPE, INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPES, REF_NAME, TAR_MEDIA_TYPE,
                         Platform)
from builder.store.store import LayerRecord, Store

if TYPE_CHECKING:
    from builder.project.lock import LockState

READ = 1 << 20
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BaseImage:
    description: str                # what the user named, for messages
    digest: str                     # what identifies it: manifest digest, config digest or rootfs diff_id
    config: dict[str, Any]          # the base's full image config
    layers: tuple[LayerRecord, ...] = field(default=())
    source_files: tuple[str, ...] = ()  # host files whose change could change the base
    floating: bool = False              # a registry tag, which may move: no-op builds must ask again


def resolve_base(source: BaseSource | None, from_ref: str | None, project: Path, store: Store,
                 platform: Platform, codec: Codec, lock: "LockState | None" = None, epoch: int = 0,
                 pinned: BasePin | None = None, insecure: frozenset[str] = frozenset(),
                 workdir: str = "/usr/local/airflow") -> BaseImage:
    """`lock`: pins for a `debian` base; `pinned`: the lock's base, for --locked (a registry tag
    resolves to its digest, wherever the tag went since); `insecure`: registries (host:port) that
    may be reached over plain HTTP; `workdir`: the project's, AIRFLOW_HOME of a `debian` base."""
    if source is None:
        if from_ref is None:
            raise InputError("no base image: add a Dockerfile with FROM, or `base:` to astro.yaml")
        if from_ref == "scratch":
            return scratch(platform)
        source = BaseSource(image=from_ref)
    if source.kind == "debian":
        from builder.bases.debian import debian_base

        return debian_base(source.debian, project, store, platform, codec, lock, epoch, workdir)
    location = source.location
    if source.kind == "image":
        base = from_registry(location, store, platform, pinned, insecure)
    elif source.kind == "oci":
        base = from_oci_layout(project, location, store, platform)
    else:
        path = (project / location).resolve()
        if not path.is_file():
            raise InputError(f"base {source.kind} {location!r}: no such file ({path})")
        base = dataclasses.replace(_cached_by_stat(store, source.kind, path, platform, codec),
                                   source_files=(str(path),))
    _check_platform(base, platform)
    return base


def scratch(platform: Platform) -> BaseImage:
    config = {"architecture": platform.architecture, "os": platform.os,
              "config": {"Env": [f"PATH={DEFAULT_PATH}"]}, "rootfs": {"type": "layers", "diff_ids": []}}
    if platform.variant:
        config["variant"] = platform.variant
    return BaseImage("scratch", "scratch", config)


def _check_platform(base: BaseImage, platform: Platform) -> None:
    if not platform.matches(base.config):
        found = "/".join(str(base.config.get(k)) for k in ("os", "architecture"))
        raise InputError(f"base {base.description} is for {found}, but the build is for {platform} "
                         "(set `platform` in astro.yaml)")


# -- registries ----------------------------------------------------------------------------------

def from_registry(text: str, store: Store, platform: Platform, pinned: BasePin | None,
                  insecure: frozenset[str]) -> BaseImage:
    from builder.registry.connect import open_client
    from builder.registry.pull import Puller
    from builder.registry.reference import parse_reference

    ref = parse_reference(text)
    description = f"image:{ref}"
    if pinned is not None and pinned.source == description and ref.digest is None:
        ref = ref.pinned(pinned.digest)
    with open_client(ref.registry, insecure=ref.registry in insecure) as client:
        pulled = Puller(client, store).pull(ref, platform)
    base = _assemble(description, pulled.digest, pulled.config_bytes, pulled.manifest["layers"], store)
    return dataclasses.replace(base, floating=ref.digest is None)


# -- OCI layout directories -----------------------------------------------------------------

def _split_layout_reference(location: str) -> tuple[str, str | None, str | None]:
    if "@" in location:
        path, _, digest = location.partition("@")
        return path, None, digest
    head, sep, tail = location.rpartition(":")
    if sep and "/" not in tail and head:
        return head, tail, None
    return location, None, None


def from_oci_layout(project: Path, location: str, store: Store, platform: Platform) -> BaseImage:
    path_text, tag, digest = _split_layout_reference(location)
    layout = (project / path_text).resolve()
    if not (layout / "index.json").is_file():
        raise InputError(f"base oci {location!r}: {layout} is not an OCI image layout (no index.json)")

    def read(dig: str) -> bytes:
        return _verified(_read_file(layout / "blobs" / dig.replace(":", "/"), location), dig, location)

    index = json.loads((layout / "index.json").read_bytes())
    manifest_desc = _pick_manifest(index.get("manifests", []), tag, digest, location)
    manifest_desc = _resolve_platform(manifest_desc, read, platform, location)
    manifest = json.loads(read(manifest_desc["digest"]))
    config_bytes = read(manifest["config"]["digest"])
    layers = []
    for layer in manifest["layers"]:
        blob = layout / "blobs" / layer["digest"].replace(":", "/")
        if not store.has_blob(layer["digest"], layer["size"]):
            with _open(blob, location) as handle:
                _import_blob(store, handle, layer["digest"], location)
        layers.append(layer)
    base = _assemble(f"oci:{location}", manifest_desc["digest"], config_bytes, layers, store)
    return dataclasses.replace(base, source_files=(str(layout / "index.json"),))


def _pick_manifest(manifests: list[dict], tag: str | None, digest: str | None, location: str) -> dict:
    if digest:
        found = [m for m in manifests if m["digest"] == digest]
    elif tag:
        found = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == tag]
    else:
        found = manifests
    if len(found) == 1:
        return found[0]
    tags = sorted(m.get("annotations", {}).get(REF_NAME, m["digest"]) for m in manifests)
    if not found:
        raise InputError(f"base oci {location!r}: no image {'tagged ' + tag if tag else digest}; "
                         f"the layout has: {', '.join(tags) or 'nothing'}")
    raise InputError(f"base oci {location!r}: the layout holds {len(found)} images ({', '.join(tags)}); "
                     "name one as DIR:TAG or DIR@sha256:...")


def _resolve_platform(desc: dict, read, platform: Platform, location: str) -> dict:
    while desc.get("mediaType") in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE):
        index = json.loads(read(desc["digest"]))
        matching = [m for m in index.get("manifests", []) if platform.matches(m.get("platform", {}))]
        if not matching:
            raise InputError(f"base {location!r} has no image for {platform}")
        desc = matching[0]
    return desc


# -- tarballs: docker-archive, OCI-layout tar, plain rootfs -------------------------------------

def _cached_by_stat(store: Store, kind: str, path: Path, platform: Platform, codec: Codec) -> BaseImage:
    """Import a tarball once; later builds find it by its stat signature without reading it."""
    st = path.stat()
    signature = f"{kind}|{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}|{codec.cache_id}"
    name = hashlib.sha256(signature.encode()).hexdigest()
    cached = store.get_record("bases", name)
    if cached is not None:
        layers = tuple(LayerRecord(**r) for r in cached["layers"])
        if all(store.has_blob(r.digest, r.size) for r in layers) and store.has_blob(cached["config_digest"]):
            config = json.loads(store.read_blob(cached["config_digest"]))
            return BaseImage(cached["description"], cached["digest"], config, layers)
    base = _import_rootfs(store, path, platform, codec) if kind == "rootfs" else _import_archive(store, path)
    config_digest = store.put_blob(json.dumps(base.config, sort_keys=True).encode())
    store.put_record("bases", name, {"description": base.description, "digest": base.digest,
                                     "config_digest": config_digest,
                                     "layers": [r.__dict__ for r in base.layers]})
    return base


def _import_rootfs(store: Store, path: Path, platform: Platform, codec: Codec) -> BaseImage:
    """A root-filesystem tarball becomes the one base layer, byte for byte (decompressed)."""
    with open(path, "rb") as handle:
        head = handle.read(6)
        handle.seek(0)
        if head[:6] == b"\xfd7zXZ\x00":
            import lzma

            handle = lzma.open(handle)  # noqa: SIM115 - closed with the outer file
            decompress = None
        else:
            decompress = decompressor_for(head)
        diff_hash = hashlib.sha256()
        compressor = codec.compressor()
        with store.blob_writer() as blob:
            while chunk := handle.read(READ):
                if decompress is not None:
                    chunk = decompress.decompress(chunk)
                diff_hash.update(chunk)
                blob.write(compressor.compress(chunk))
            blob.write(compressor.flush())
            digest = blob.commit()
            record = LayerRecord("sha256:" + diff_hash.hexdigest(), digest, blob.size, codec.media_type)
    store.put_compressed(codec.cache_id, record)
    config = scratch(platform).config
    config["rootfs"]["diff_ids"] = [record.diff_id]
    config["history"] = [{"created": "1970-01-01T00:00:00Z", "created_by": f"airbuild: rootfs {path.name}"}]
    return BaseImage(f"rootfs:{path.name}", record.diff_id, config, (record,))


def _import_archive(store: Store, path: Path) -> BaseImage:
    try:
        archive = tarfile.open(path)
    except tarfile.TarError as exc:
        raise InputError(f"base archive {path}: not a tar file ({exc})") from None
    with archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            if name not in members:
                raise InputError(f"base archive {path}: missing {name}")
            return archive.extractfile(members[name]).read()

        if "index.json" in members:
            return _import_oci_archive(store, path, members, archive, read)
        if "manifest.json" in members:
            return _import_docker_archive(store, path, members, archive, read)
    raise InputError(f"base archive {path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)")


def _import_oci_archive(store, path, members, archive, read) -> BaseImage:
    index = json.loads(read("index.json"))
    desc = _pick_manifest(index.get("manifests", []), None, None, str(path))

    def blob(dig: str) -> bytes:
        return _verified(read("blobs/" + dig.replace(":", "/")), dig, str(path))

    manifest = json.loads(blob(desc["digest"]))
    config_bytes = blob(manifest["config"]["digest"])
    for layer in manifest["layers"]:
        if not store.has_blob(layer["digest"], layer["size"]):
            name = "blobs/" + layer["digest"].replace(":", "/")
            if name not in members:
                raise InputError(f"base archive {path}: missing {name}")
            _import_blob(store, archive.extractfile(members[name]), layer["digest"], str(path))
    return _assemble(f"archive:{path.name}", desc["digest"], config_bytes, manifest["layers"], store)


def _import_docker_archive(store, path, members, archive, read) -> BaseImage:
    entries = json.loads(read("manifest.json"))
    if len(entries) != 1:
        raise InputError(f"base archive {path}: holds {len(entries)} images; save exactly one")
    entry = entries[0]
    config_bytes = read(entry["Config"])
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    layers = []
    for name in entry["Layers"]:
        if name not in members:
            raise InputError(f"base archive {path}: missing {name}")
        with store.blob_writer() as blob:
            handle = archive.extractfile(members[name])
            head = handle.read(4)
            blob.write(head)
            while chunk := handle.read(READ):
                blob.write(chunk)
            digest = blob.commit()
        media_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if head[:2] == b"\x1f\x8b"
                      else "application/vnd.oci.image.layer.v1.tar+zstd" if head == b"\x28\xb5\x2f\xfd"
                      else TAR_MEDIA_TYPE)
        layers.append({"mediaType": media_type, "digest": digest, "size": blob.size})
    return _assemble(f"archive:{path.name}", config_digest, config_bytes, layers, store)


# -- shared ------------------------------------------------------------------------------------

def _assemble(description: str, digest: str, config_bytes: bytes, layers: list[dict], store: Store) -> BaseImage:
    config = json.loads(config_bytes)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(layers):
        raise InputError(f"base {description}: config lists {len(diff_ids)} layers, manifest {len(layers)}")
    records = []
    for layer, diff_id in zip(layers, diff_ids):
        media_type = LAYER_MEDIA_TYPES.get(layer["mediaType"])
        if media_type is None:
            raise InputError(f"base {description}: unsupported layer type {layer['mediaType']}")
        records.append(LayerRecord(diff_id, layer["digest"], layer["size"], media_type))
    return BaseImage(description, digest, config, tuple(records))


def _verified(data: bytes, digest: str, where: str) -> bytes:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise InputError(f"base {where!r}: blob {digest} does not match its digest (corrupt layout?)")
    return data


def _read_file(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"base {where!r}: missing blob {path.name}") from None


def _open(path: Path, where: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"base {where!r}: missing blob {path.name}") from None


def _import_blob(store: Store, handle: BinaryIO, digest: str, where: str) -> None:
    with store.blob_writer() as blob:
        while chunk := handle.read(READ):
            blob.write(chunk)
        if blob.digest != digest:
            raise InputError(f"base {where!r}: blob {digest} does not match its digest (corrupt?)")
        blob.commit()
