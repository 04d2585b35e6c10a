"""A layer as a directory and back: items written into an overlayfs upper directory, and the upper
directory, once something ran over it, read back as a layer's items.

What ran over the merged view leaves its changes in the upper directory the way overlayfs
records them: a deleted lower file as a whiteout (a 0/0 character device), a directory whose
lower content is hidden as an opaque directory (the `overlay.opaque` extended attribute).
Both become the OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) a layer carries.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from builder.layers.tar import LayerItem


@dataclass(frozen=True)
class Recorded:
    """An upper entry's metadata as the image has it, read where the sandbox ran (a user namespace)."""
    uid: int
    gid: int
    mode: int
    capability: bytes | None  # the security.capability extended attribute

OPAQUE = (b"trusted.overlay.opaque", b"user.overlay.opaque")
# what overlayfs itself keeps on upper entries; never part of the layer
_OVERLAY_XATTR = (b"trusted.overlay.", b"user.overlay.")


def write_items(items: Iterable[LayerItem], root: Path, epoch: int, lower: Path | None = None,
                move_sources: bool = False, lower_owners: dict[str, tuple[int, int]] | None = None) -> None:
    """Write `items` (sorted, parents first) under `root` with their modes, owners and mtime `epoch`;
    `move_sources`: the items' source files are spooled copies, renamed into place rather than copied.

    A directory the items name only as a parent takes the metadata the lower filesystem has for it,
    so the upper directory does not change a base directory's mode or owner. `lower_owners`: the owners
    the lower's entries have in the image, where its files on disk do not carry them (unpacked by a
    regular user; root's entries left out). A regular user cannot set owners: the caller does, with
    the items' (uid, gid), in a user namespace."""
    can_chown = os.geteuid() == 0
    directories: list[tuple[Path, LayerItem]] = []
    for item in items:
        path = root / item.path
        if item.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            directories.append((path, _lower_dir(item, lower, lower_owners)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.kind == "file" and move_sources and item.source is not None:
            os.replace(item.source, path)
        elif item.kind == "file":
            with open(path, "wb") as out:
                if item.data is not None:
                    out.write(item.data)
                else:
                    with open(item.source, "rb") as source:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
        elif item.kind == "symlink":
            os.symlink(item.link, path)
        elif item.kind == "hardlink":
            os.link(root / item.link, path, follow_symlinks=False)
            continue
        _metadata(path, item, epoch, can_chown)
    for path, item in reversed(directories):  # children first: writing into a directory moves its mtime
        _metadata(path, item, epoch, can_chown)


def _lower_dir(item: LayerItem, lower: Path | None, lower_owners: dict[str, tuple[int, int]] | None) -> LayerItem:
    if lower is None:
        return item
    try:
        st = os.lstat(lower / item.path)
    except OSError:
        return item
    if not stat.S_ISDIR(st.st_mode) or (item.mode, item.uid, item.gid) != (0o755, 0, 0):
        return item
    uid, gid = (st.st_uid, st.st_gid) if lower_owners is None else lower_owners.get(item.path, (0, 0))
    return LayerItem(item.path, "dir", stat.S_IMODE(st.st_mode), uid, gid)


def directory_metadata(items: Iterable[LayerItem], lower: Path | None,
                       lower_owners: dict[str, tuple[int, int]] | None) -> dict[str, LayerItem]:
    """The metadata write_items gives each directory (parents included as the lower has them)."""
    return {i.path: _lower_dir(i, lower, lower_owners) for i in items if i.kind == "dir"}


def _metadata(path: Path, item: LayerItem, epoch: int, can_chown: bool) -> None:
    if can_chown:
        os.lchown(path, item.uid, item.gid)
    if item.kind != "symlink":
        os.chmod(path, item.mode)  # after chown, which clears setuid bits
    mtime = item.mtime if item.mtime is not None else epoch
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def read_upper(root: Path, recorded: dict[str, Recorded] | None = None) -> list[LayerItem]:
    """The upper directory's entries as layer items (bodies left in place), whiteouts translated, sorted.
    `recorded`: owner, mode and capabilities of each entry as the image has them, where the files on disk do not
    (a rootless sandbox's upper directory, handed back to the user)."""
    found: list[tuple[str, str, os.stat_result]] = []
    for directory, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            found.append((name if rel_dir == "." else f"{rel_dir}/{name}", path, os.lstat(path)))
    items: list[LayerItem] = []
    inodes: dict[tuple[int, int], str] = {}  # the first path of a hard-linked file, in the layer's order
    for rel, path, st in sorted(found, key=lambda f: f[0]):
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        known = recorded.get(rel) if recorded is not None else None
        if known is not None:
            uid, gid, mode = known.uid, known.gid, known.mode
        xattrs = _xattrs(path) if known is None else _capability(known.capability)
        mtime = int(st.st_mtime)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            items.append(LayerItem(_whiteout(rel), "file", 0o644, mtime=mtime))
        elif stat.S_ISDIR(st.st_mode):
            items.append(LayerItem(rel, "dir", mode, uid, gid, mtime=mtime, xattrs=xattrs))
            if _opaque(path):
                items.append(LayerItem(f"{rel}/.wh..wh..opq", "file", 0o644, mtime=mtime))
        elif stat.S_ISLNK(st.st_mode):
            items.append(LayerItem(rel, "symlink", 0o777, uid, gid, mtime=mtime, link=os.readlink(path)))
        elif stat.S_ISREG(st.st_mode):
            first = inodes.setdefault((st.st_dev, st.st_ino), rel) if st.st_nlink > 1 else rel
            if first != rel:
                items.append(LayerItem(rel, "hardlink", mode, uid, gid, mtime=mtime, link=first))
            else:
                items.append(LayerItem(rel, "file", mode, uid, gid, st.st_size, source=path,
                                       mtime=mtime, xattrs=xattrs))
        # sockets, fifos and other devices: a layer cannot carry them
    return sorted(items, key=lambda i: i.path)


def _whiteout(rel: str) -> str:
    parent, _, name = rel.rpartition("/")
    return f"{parent}/.wh.{name}" if parent else f".wh.{name}"


def _opaque(path: str) -> bool:
    for key in OPAQUE:
        try:
            if os.getxattr(path, key, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _capability(value: bytes | None) -> tuple[tuple[str, str], ...]:
    return (("security.capability", value.decode("utf-8", "surrogateescape")),) if value else ()


def _xattrs(path: str) -> tuple[tuple[str, str], ...]:
    """Extended attributes a layer keeps (security.capability set by setcap...), as tar's PAX records hold them."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in names:
        if name.encode().startswith(_OVERLAY_XATTR) or not name.startswith("security.capability"):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out.append((name, value.decode("utf-8", "surrogateescape")))
    return tuple(sorted(out))
