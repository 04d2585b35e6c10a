"""Hostile base images written by hand: layers made with tarfile, packed as an OCI layout directory or a
docker-archive, for tests/test_hostile_bases.py and benchmarks/fault_campaign.py's input part."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Iterable

GIB = 1 << 30


def entry(name: str, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes | None]:
    """A tar entry: a regular file with `data`, or whatever `fields` make it (type=, linkname=, size=...)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if fields.get("type") == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, (data if info.isreg() else None)


def symlink(name: str, target: str):
    return entry(name, type=tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str):
    return entry(name, type=tarfile.LNKTYPE, linkname=target)


def device(name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3):
    return entry(name, type=kind, devmajor=major, devminor=minor)


def sparse(name: str, size: int, data: bytes = b"x" * 4096):
    """A GNU sparse file (PAX 0.1): `size` bytes long, `data` at its start and at its end, holes between."""
    info = tarfile.TarInfo(name)
    info.size = 2 * len(data)
    info.mode = 0o644
    info.pax_headers = {"GNU.sparse.map": f"0,{len(data)},{size - len(data)},{len(data)}",
                        "GNU.sparse.size": str(size), "GNU.sparse.name": name}
    return info, data + data


def layer(entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """An uncompressed layer tarball of `entries`, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _blob(directory: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (directory / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _config(layers: list[bytes]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
                       "rootfs": {"type": "layers",
                                  "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers]}}).encode()


def oci_layout(directory: Path, layers: list[bytes], *, tag: str = "latest") -> Path:
    """An OCI image layout holding one image of `layers` (each gzip-compressed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(directory, _config(layers))}
    described = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  **_blob(directory, gzip.compress(raw, mtime=0))} for raw in layers]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": described}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                 **_blob(directory, manifest),
                                                 "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def docker_archive(path: Path, layers: list[bytes]) -> Path:
    """A `docker save` tarball (manifest.json, the config, one uncompressed layer.tar per layer)."""
    config = _config(layers)
    files = {f"{hashlib.sha256(config).hexdigest()}.json": config}
    names = []
    for number, raw in enumerate(layers):
        names.append(f"layer{number}/layer.tar")
        files[names[-1]] = raw
    files["manifest.json"] = json.dumps([{"Config": next(iter(files)), "RepoTags": ["hostile:latest"],
                                          "Layers": names}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
