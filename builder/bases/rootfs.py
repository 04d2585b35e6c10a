"""A base from a root-filesystem tarball (`rootfs:FILE`, gzip, zstd or xz): it becomes the one base layer.

Tarballs (rootfs and archives) are imported once: later builds find them by their stat signature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.bases.archive import import_archive
from builder.bases.image import READ, BaseImage, scratch
from builder.layers.compress import Codec, decompressor_for
from builder.oci.descriptors import Platform
from builder.store.store import LayerRecord, Store


def cached_by_stat(store: Store, kind: str, path: Path, platform: Platform, codec: Codec) -> BaseImage:
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
    base = _import_rootfs(store, path, platform, codec) if kind == "rootfs" else import_archive(store, path)
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
            import lzma  # rare: xz-compressed rootfs tarballs only

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
