"""Two layers compared entry by entry: which paths differ, and in what (content, mode, owner, link...).

`airbuild verify` names what differs inside the first layer of a rebuilt image that is not the
pushed one's. Each layer is read once, as a stream (`read.members`); a file's content is compared
by its sha256, so neither layer is held in memory.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from dataclasses import asdict, dataclass

from builder.layers.read import members
from builder.store.store import LayerRecord, Store

READ = 1 << 20
_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.DIRTYPE: "dir",
          tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char device",
          tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


@dataclass(frozen=True)
class Entry:
    """One entry of a layer, as far as the image's filesystem can tell."""
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str | None    # a file's content
    link: str             # a symlink's target, or the path a hardlink points at
    mtime: int
    xattrs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Change:
    what: str             # presence | type | content | mode | owner | link | mtime | xattrs
    rebuilt: str          # as the rebuilt image has it ("absent" for presence)
    reference: str        # as the image it is compared with has it


@dataclass(frozen=True)
class PathDifference:
    path: str
    changes: tuple[Change, ...]

    def to_json(self) -> dict:
        return {"path": self.path, "changes": [asdict(c) for c in self.changes]}


@dataclass(frozen=True)
class LayerDiff:
    paths: tuple[PathDifference, ...]   # the first `limit`, by path
    total: int                          # how many paths differ in all


def entries(store: Store, layer: LayerRecord) -> dict[str, Entry]:
    """Path (no leading slash, normalised) -> entry, for every entry of the layer blob."""
    found = {}
    for member, open_member in members(store, layer):
        path = posixpath.normpath(member.name.lstrip("/").removeprefix("./"))
        digest = None
        if member.isreg():
            hashed = hashlib.sha256()
            handle = open_member()
            while chunk := handle.read(READ):
                hashed.update(chunk)
            digest = "sha256:" + hashed.hexdigest()
        xattrs = tuple(sorted((k, v) for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")))
        found[path] = Entry(_KINDS.get(member.type, f"type {member.type!r}"), member.mode & 0o7777, member.uid,
                            member.gid, member.size if member.isreg() else 0, digest, member.linkname,
                            int(member.mtime), xattrs)
    return found


def compare(rebuilt: dict[str, Entry], reference: dict[str, Entry], limit: int = 50) -> LayerDiff:
    differing = []
    for path in sorted(rebuilt.keys() | reference.keys()):
        changes = changes_between(rebuilt.get(path), reference.get(path))
        if changes:
            differing.append(PathDifference(path, changes))
    return LayerDiff(tuple(differing[:limit]), len(differing))


def diff_layers(store: Store, rebuilt: LayerRecord | None, reference: LayerRecord | None,
                limit: int = 50) -> LayerDiff:
    """The paths that differ between two layers in the store (None: a layer one image does not have)."""
    return compare(entries(store, rebuilt) if rebuilt else {}, entries(store, reference) if reference else {}, limit)


def changes_between(ours: Entry | None, theirs: Entry | None) -> tuple[Change, ...]:
    if ours is None or theirs is None:
        if ours is theirs:
            return ()
        return (Change("presence", _kind(ours), _kind(theirs)),)
    if ours.kind != theirs.kind:
        return (Change("type", ours.kind, theirs.kind),)
    changes = []
    if ours.sha256 != theirs.sha256:
        changes.append(Change("content", f"{ours.size} bytes, {ours.sha256}", f"{theirs.size} bytes, {theirs.sha256}"))
    if ours.mode != theirs.mode:
        changes.append(Change("mode", f"{ours.mode:04o}", f"{theirs.mode:04o}"))
    if (ours.uid, ours.gid) != (theirs.uid, theirs.gid):
        changes.append(Change("owner", f"{ours.uid}:{ours.gid}", f"{theirs.uid}:{theirs.gid}"))
    if ours.link != theirs.link:
        changes.append(Change("link", ours.link, theirs.link))
    if ours.mtime != theirs.mtime:
        changes.append(Change("mtime", str(ours.mtime), str(theirs.mtime)))
    if ours.xattrs != theirs.xattrs:
        changes.append(Change("xattrs", _xattrs(ours), _xattrs(theirs)))
    return tuple(changes)


def _kind(entry: Entry | None) -> str:
    return "absent" if entry is None else entry.kind


def _xattrs(entry: Entry) -> str:
    return ", ".join(k.removeprefix("SCHILY.xattr.") for k, _ in entry.xattrs) or "none"
