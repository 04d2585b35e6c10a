"""A resolved base image, and what every source of one shares: reading its blobs into the store."""

from __future__ import annotations

import contextlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from builder.common.errors import InputError
from builder.oci.descriptors import LAYER_MEDIA_TYPES, Platform
from builder.store.store import LayerRecord, Store

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

    @property
    def env(self) -> dict[str, str]:
        """The config's `Env` as a mapping: what a program run over this image's filesystem starts with."""
        return dict(e.split("=", 1) for e in (self.config.get("config") or {}).get("Env") or [] if "=" in e)


def scratch(platform: Platform) -> BaseImage:
    config = {"architecture": platform.architecture, "os": platform.os,
              "config": {"Env": [f"PATH={DEFAULT_PATH}"]}, "rootfs": {"type": "layers", "diff_ids": []}}
    if platform.variant:
        config["variant"] = platform.variant
    return BaseImage("scratch", "scratch", config)


def check_platform(base: BaseImage, platform: Platform) -> None:
    if not platform.matches(base.config):
        found = "/".join(str(base.config.get(k)) for k in ("os", "architecture"))
        raise InputError(f"base {base.description} is for {found}, but the build is for {platform} "
                         "(set `platform` in astro.yaml)")


def from_config(description: str, digest: str, config_bytes: bytes, layers: list[dict], store: Store) -> BaseImage:
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


@contextlib.contextmanager
def malformed(where: str) -> Iterator[None]:
    """Reading an image's metadata (a file the user gave): what is not shaped as the OCI spec says is an
    input error naming the image, not a crash."""
    try:
        yield
    except KeyError as exc:
        raise InputError(f"{where}: not a valid image (missing {exc})") from None
    except (ValueError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: not a valid image ({detail[:200]})") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:  # a truncated or corrupt tarball, read as it goes
        raise InputError(f"{where}: cannot read it ({exc})") from None


def import_blob(store: Store, handle: BinaryIO, digest: str, where: str) -> None:
    with store.blob_writer() as blob:
        while chunk := handle.read(READ):
            blob.write(chunk)
        if blob.digest != digest:
            raise InputError(f"base {where!r}: blob {digest} does not match its digest (corrupt?)")
        blob.commit()
