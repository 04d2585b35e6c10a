"""Read files out of an image's layers without unpacking it: top layer first, whiteouts honoured."""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from builder.layers.whiteouts import whiteout
from builder.common.errors import InputError, NotLocal
from builder.store.store import LayerRecord, Store



def find_files(store: Store, layers: Sequence[LayerRecord], wanted: Callable[[str], bool],
               cache_name: str | None = None) -> dict[str, bytes]:
    """Path (no leading slash) -> content of the regular files `wanted` selects, as the merged image shows them.

    With `cache_name`, the answer is kept in the store per layer chain and query.
    """
    record = _record_name(cache_name, layers)
    cached = store.get_record("base-files", record) if record else None
    if cached is not None:
        return {path: bytes.fromhex(data) for path, data in cached.items()}
    found = _from_memo(layers, wanted)
    if found is None:
        found = {path: read() for path, kind, read in _scan(store, layers, wanted) if kind == "file" and wanted(path)}
    if record:
        store.put_record("base-files", record, {p: d.hex() for p, d in found.items()})
    return found


def list_paths(store: Store, layers: Sequence[LayerRecord], wanted: Callable[[str], bool],
               cache_name: str | None = None) -> dict[str, str]:
    """Path -> "file", "dir" or "symlink:TARGET" for the entries `wanted` selects in the merged image."""
    record = _record_name(cache_name, layers)
    cached = store.get_record("base-paths", record) if record else None
    if cached is not None:
        return cached
    memo = _memo.get(_chain(layers))
    listing = memo.listing if memo is not None else {path: kind for path, kind, _ in _scan(store, layers)}
    found = {path: kind for path, kind in listing.items() if wanted(path)}
    if record:
        store.put_record("base-paths", record, found)
    return found


def find_symlinks(store: Store, layers: Sequence[LayerRecord], cache_name: str | None = None) -> dict[str, str]:
    """Path (no leading slash) -> target of every symlink the merged image shows."""
    return {path: kind.removeprefix("symlink:")
            for path, kind in list_paths(store, layers, lambda path: True, cache_name=cache_name and
                                         f"links-{cache_name}").items() if kind.startswith("symlink:")}


def _record_name(cache_name: str | None, layers: Sequence[LayerRecord]) -> str | None:
    if cache_name is None:
        return None
    return hashlib.sha256(f"{cache_name}|{_chain(layers)}".encode()).hexdigest()


def _chain(layers: Sequence[LayerRecord]) -> str:
    return "|".join(r.diff_id for r in layers)


# -- one decompression per layer chain and process ----------------------------------------------
# A build asks an image several questions (accounts, Python, installed distributions, dpkg status),
# each a full pass over gzip'd layers (~1 s for a Debian base). The first pass keeps the listing
# and the small files those questions read, so the later ones are answered from memory.

_KEPT_SIZE = 4 << 20
MAX_READ = 64 << 20  # a file read into memory to answer a question about the image (accounts, metadata)


def _kept(path: str) -> bool:
    return path.startswith(("etc/", "var/lib/dpkg/")) or path.endswith(("/METADATA", "/PKG-INFO", ".egg-info", ".egg-info/requires.txt"))


@dataclass
class _Memo:
    listing: dict[str, str]          # path -> "file", "dir", "symlink:TARGET"
    contents: dict[str, bytes]       # the files _kept() chose


_memo: dict[str, _Memo] = {}


def _scan(store: Store, layers: Sequence[LayerRecord], wanted: Callable[[str], bool] = lambda path: False):
    """(path, kind, read its content) for every entry of the merged image; remembered for this process.

    A file `wanted` selects that is too big to read into memory is refused (a hostile image's
    /etc/passwd of 10 GB, sparse) before any of it is read."""
    listing: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    for path, member, open_member in merged_entries(store, layers):
        kind = "dir" if member.isdir() else f"symlink:{member.linkname}" if member.issym() else "file"
        listing[path] = kind
        if kind == "file" and member.size > MAX_READ and wanted(path):
            raise InputError(f"the base image's /{path} is {member.size} bytes; airbuild reads at most {MAX_READ} "
                             "bytes of a file it inspects (a hostile or broken image?)")
        if kind == "file" and member.size <= _KEPT_SIZE and _kept(path):
            contents[path] = _read(open_member, path)
            read = (lambda data=contents[path]: data)
        else:
            read = (lambda open_member=open_member, path=path: _read(open_member, path))
        yield path, kind, read
    _memo[_chain(layers)] = _Memo(listing, contents)


def _read(open_member: Callable, path: str) -> bytes:
    try:
        handle = open_member()
        return handle.read() if handle is not None else b""
    except (tarfile.TarError, zlib.error, OSError, EOFError) as exc:
        raise InputError(f"cannot read /{path} in the base image: {exc}") from None


def _from_memo(layers: Sequence[LayerRecord], wanted: Callable[[str], bool]) -> dict[str, bytes] | None:
    """The files `wanted` selects, if an earlier pass kept every one of them; else None."""
    memo = _memo.get(_chain(layers))
    if memo is None:
        return None
    paths = [path for path, kind in memo.listing.items() if kind == "file" and wanted(path)]
    if not all(path in memo.contents for path in paths):
        return None
    return {path: memo.contents[path] for path in paths}


def merged_entries(store: Store, layers: Sequence[LayerRecord]):
    """(path, tar member, open its content) for every entry the merged image shows, top layer first; a
    member's content is readable only until the next entry is asked for (the layers are streamed)."""
    hidden: set[str] = set()        # paths whited out by an upper layer
    opaque: set[str] = set()        # directories made opaque by an upper layer
    seen: set[str] = set()          # paths an upper layer has
    for layer in reversed(layers):
        layer_hidden, layer_opaque = set(), set()
        for member, open_member in members(store, layer):
            path = posixpath.normpath(member.name.lstrip("/").removeprefix("./"))
            marker = whiteout(path)
            if marker is not None and marker.opaque:
                layer_opaque.add(marker.directory)
                continue
            if marker is not None:
                layer_hidden.add(marker.target)
                continue
            if path in seen or _covered(path, hidden, opaque):
                continue
            seen.add(path)
            yield path, member, open_member
        hidden |= layer_hidden
        opaque |= layer_opaque


def _covered(path: str, hidden: set[str], opaque: set[str]) -> bool:
    if not hidden and not opaque:
        return False
    parent = path
    while parent:
        if parent in hidden:
            return True
        parent = posixpath.dirname(parent)
        if parent in opaque or (parent == "" and "" in opaque):
            return True
    return False


def _open_member(archive: tarfile.TarFile, member: tarfile.TarInfo, packed: bool):
    """A member's content; `packed`: a sparse file's data regions only, one after the other (as stored)."""
    if packed and member.sparse:
        archive.fileobj.seek(member.offset_data)  # a stream seeks forward: the data is next
        return _Packed(archive.fileobj, sum(size for _, size in member.sparse))
    return archive.extractfile(member)


class _Packed:
    def __init__(self, stream, size: int):
        self.stream, self.left = stream, size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data


def members(store: Store, layer: LayerRecord):
    """(tar member, open its content) for each entry of a layer blob, in order; `open(packed=True)` gives a
    sparse file's data regions without the holes between them."""
    if not store.has_blob(layer.digest):  # a read-only plan's base: only its manifest and config were fetched
        raise NotLocal(f"layer {layer.digest} is not in the store")
    path = store.blob_path(layer.digest)
    try:
        with open(path, "rb") as raw:
            head = raw.read(4)
        if head == b"\x28\xb5\x2f\xfd":
            import zstandard  # only for zstd layers

            source = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        elif head[:2] == b"\x1f\x8b":
            from isal import igzip  # ISA-L: about 1.5x zlib's speed on a layer

            source = igzip.open(path, "rb")
        else:
            source = open(path, "rb")
        with source, tarfile.open(fileobj=source, mode="r|") as archive:
            while (member := archive.next()) is not None:
                archive.members.clear()  # a stream's members are not needed again: memory stays flat at any count
                yield member, (lambda packed=False, m=member: _open_member(archive, m, packed))
    except (tarfile.TarError, zlib.error, OSError, EOFError) as exc:
        raise InputError(f"cannot read base layer {layer.digest}: {exc}") from None
