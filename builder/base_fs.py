"""Read files out of an image's layers without unpacking it: top layer first, whiteouts honoured."""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
import zlib
from typing import Callable, Sequence

from builder.errors import InputError
from builder.store import LayerRecord, Store

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def find_files(store: Store, layers: Sequence[LayerRecord], wanted: Callable[[str], bool],
               cache_name: str | None = None) -> dict[str, bytes]:
    """Path (no leading slash) -> content of the regular files `wanted` selects, as the merged image shows them.

    With `cache_name`, the answer is kept in the store per layer chain and query.
    """
    record_name = _record_name(layers, cache_name)
    if record_name is not None:
        cached = store.get_record("base-files", record_name)
        if cached is not None:
            return {path: bytes.fromhex(data) for path, data in cached.items()}
    found = {path: read() for path, member, read in visible_members(store, layers)
             if member.isfile() and wanted(path)}
    if record_name is not None:
        store.put_record("base-files", record_name, {p: d.hex() for p, d in found.items()})
    return found


def find_symlinks(store: Store, layers: Sequence[LayerRecord], cache_name: str | None = None) -> dict[str, str]:
    """Path (no leading slash) -> target of every symlink the merged image shows."""
    record_name = _record_name(layers, cache_name)
    if record_name is not None:
        cached = store.get_record("base-links", record_name)
        if cached is not None:
            return cached
    found = {path: member.linkname for path, member, _ in visible_members(store, layers) if member.issym()}
    if record_name is not None:
        store.put_record("base-links", record_name, found)
    return found


def _record_name(layers: Sequence[LayerRecord], cache_name: str | None) -> str | None:
    if cache_name is None:
        return None
    chain = "|".join(r.diff_id for r in layers)
    return hashlib.sha256(f"{cache_name}|{chain}".encode()).hexdigest()


def visible_members(store: Store, layers: Sequence[LayerRecord]):
    """(path, tar header, read) of every entry the merged image shows, top layer first."""
    hidden: set[str] = set()        # paths whited out by an upper layer
    opaque: set[str] = set()        # directories made opaque by an upper layer
    seen: set[str] = set()          # paths an upper layer has (file, link or dir)
    for layer in reversed(layers):
        layer_hidden, layer_opaque = set(), set()
        for member, read in _members(store, layer):
            path = posixpath.normpath(member.name.lstrip("/").removeprefix("./"))
            directory, name = posixpath.split(path)
            if name == OPAQUE:
                layer_opaque.add(directory)
                continue
            if name.startswith(WHITEOUT):
                layer_hidden.add(posixpath.join(directory, name[len(WHITEOUT):]))
                continue
            if path in seen or _covered(path, hidden, opaque):
                continue
            seen.add(path)
            yield path, member, read
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


def _members(store: Store, layer: LayerRecord):
    path = store.blob_path(layer.digest)
    with open(path, "rb") as raw:
        head = raw.read(4)
    try:
        if head == b"\x28\xb5\x2f\xfd":
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
            archive = tarfile.open(fileobj=stream, mode="r|")
        else:
            archive = tarfile.open(path, mode="r|gz" if head[:2] == b"\x1f\x8b" else "r|")
        with archive:
            for member in archive:
                yield member, (lambda m=member: archive.extractfile(m).read())
    except (tarfile.TarError, zlib.error, OSError) as exc:
        raise InputError(f"cannot read base layer {layer.digest}: {exc}") from None
