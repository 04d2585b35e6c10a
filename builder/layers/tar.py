"""Deterministic layer tarballs (DESIGN.md principle 2), streamed into the store compressed.

Headers are built by `tarfile.TarInfo` with every field set here: integer mtime,
empty uname/gname, uid/gid from the rule, PAX records only where a name or size
needs one. File bodies are copied in 1 MiB reads straight into the stream.
"""

from __future__ import annotations

import hashlib
import time
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Callable, Iterable

from builder.common import phases
from builder.layers.compress import Codec
from builder.store.store import LayerRecord, Store

BLOCK = 512
READ = 1 << 20


@dataclass(frozen=True)
class LayerItem:
    path: str                 # inside the image, no leading slash
    kind: str                 # "file" | "dir" | "symlink" | "hardlink"
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    source: str | None = None  # host file with the content
    data: bytes | None = None  # or the content itself
    link: str = ""            # symlink target, or the path a hardlink points at
    digest: str = ""          # expected sha256 hex of `source`: the layer key was computed from it
    mtime: int | None = None  # its own modification time, else the layer's
    xattrs: tuple[tuple[str, str], ...] = ()  # extended attributes (security.capability...), as PAX records


class FileChangedError(OSError):
    pass


def with_parents(items: Iterable[LayerItem], uid: int = 0, gid: int = 0) -> list[LayerItem]:
    """`items` plus every missing parent directory, sorted by path."""
    by_path = {item.path: item for item in items}
    for path in list(by_path):
        parent = posixpath.dirname(path)
        while parent and parent not in by_path:
            by_path[parent] = LayerItem(parent, "dir", 0o755, uid, gid)
            parent = posixpath.dirname(parent)
    return [by_path[p] for p in sorted(by_path)]


_TYPEFLAG = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
_USTAR_MAX_ID = 0o7777777


def _header(item: LayerItem, mtime: int) -> bytes:
    """A ustar header built directly, byte-identical to tarfile's; tarfile's own PAX path when one is needed."""
    name = item.path + "/" if item.kind == "dir" else item.path
    if item.mtime is not None:
        mtime = item.mtime
    if (not item.xattrs and len(name) <= 100 and len(item.link) <= 100 and name.isascii() and item.link.isascii()
            and item.uid <= _USTAR_MAX_ID and item.gid <= _USTAR_MAX_ID and item.size < 8 ** 11 and mtime < 8 ** 11):
        size = item.size if item.kind == "file" else 0
        header = bytearray(b"".join((
            name.encode().ljust(100, b"\0"),
            b"%07o\0" % item.mode, b"%07o\0" % item.uid, b"%07o\0" % item.gid,
            b"%011o\0" % size, b"%011o\0" % mtime,
            b" " * 8,  # checksum placeholder
            _TYPEFLAG[item.kind],
            item.link.encode().ljust(100, b"\0"),
            b"ustar\x0000",
            b"\0" * 32, b"\0" * 32,           # uname, gname: empty
            b"\0" * 16,                         # devmajor, devminor: unused, as tarfile leaves them
            b"\0" * 155, b"\0" * 12,
        )))
        header[148:156] = b"%06o\0 " % sum(header)
        return bytes(header)
    return _pax_header(item, mtime)


def _pax_header(item: LayerItem, mtime: int) -> bytes:
    info = tarfile.TarInfo(item.path)
    info.mode = item.mode
    info.uid, info.gid = item.uid, item.gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.pax_headers = {f"SCHILY.xattr.{key}": value for key, value in item.xattrs}
    if item.kind == "file":
        info.type, info.size = tarfile.REGTYPE, item.size
    elif item.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif item.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, item.link
    elif item.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, item.link
    else:
        raise ValueError(f"unknown layer item kind {item.kind!r}")
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_tar(items: list[LayerItem], write: Callable[[bytes], None], mtime: int) -> None:
    for item in items:
        write(_header(item, mtime))
        if item.kind != "file":
            continue
        if item.data is not None:
            write(item.data)
            copied = len(item.data)
        else:
            copied, content_hash = 0, hashlib.sha256()
            with open(item.source, "rb") as handle:
                while chunk := handle.read(READ):
                    copied += len(chunk)
                    if copied > item.size:
                        break
                    content_hash.update(chunk)
                    write(chunk)
            if copied != item.size or (item.digest and content_hash.hexdigest() != item.digest):
                raise FileChangedError(f"{item.source} changed while the layer was being written; build again")
        if item.size % BLOCK:
            write(b"\0" * (BLOCK - item.size % BLOCK))
    write(b"\0" * (2 * BLOCK))


def store_layer(store: Store, codec: Codec, items: list[LayerItem], mtime: int) -> LayerRecord:
    """Tar, hash and compress `items` in one pass into a blob; record diff_id -> blob for the codec."""
    diff_hash = hashlib.sha256()
    compressor = codec.compressor()
    spent = [0.0]  # in the compressor: the rest of the pass is reading, tarring and hashing
    started = time.perf_counter()
    with store.blob_writer() as blob:
        def sink(data: bytes) -> None:
            diff_hash.update(data)
            before = time.perf_counter()
            blob.write(compressor.compress(data))
            spent[0] += time.perf_counter() - before

        write_tar(items, sink, mtime)
        before = time.perf_counter()
        blob.write(compressor.flush())
        spent[0] += time.perf_counter() - before
        phases.add("compress", spent[0])
        phases.add("tar", time.perf_counter() - started - spent[0])
        digest = blob.commit()
        record = LayerRecord(diff_id="sha256:" + diff_hash.hexdigest(), digest=digest,
                             size=blob.size, media_type=codec.media_type)
    store.put_compressed(codec.cache_id, record)
    return record
