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
    record = _record_name(cache_name, layers)
    cached = store.get_record("base-files", record) if record else None
    if cached is not None:
        return {path: bytes.fromhex(data) for path, data in cached.items()}
    found = {path: open_member().read() for path, member, open_member in _merged(store, layers)
             if member.isfile() and wanted(path)}
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
    found = {}
    for path, member, _ in _merged(store, layers):
        if wanted(path):
            found[path] = ("dir" if member.isdir() else f"symlink:{member.linkname}" if member.issym()
                           else "file")
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
    chain = "|".join(r.diff_id for r in layers)
    return hashlib.sha256(f"{cache_name}|{chain}".encode()).hexdigest()


def _merged(store: Store, layers: Sequence[LayerRecord]):
    """(path, tar member, open its content) for every entry the merged image shows, top layer first."""
    hidden: set[str] = set()        # paths whited out by an upper layer
    opaque: set[str] = set()        # directories made opaque by an upper layer
    seen: set[str] = set()          # paths an upper layer has
    for layer in reversed(layers):
        layer_hidden, layer_opaque = set(), set()
        for member, open_member in members(store, layer):
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


def members(store: Store, layer: LayerRecord):
    """(tar member, open its content) for each entry of a layer blob, in order."""
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
                yield member, (lambda m=member: archive.extractfile(m))
    except (tarfile.TarError, zlib.error, OSError) as exc:
        raise InputError(f"cannot read base layer {layer.digest}: {exc}") from None
