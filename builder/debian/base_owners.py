"""The base's entries not owned by root, and an overlay layer that gives them their owners to a rootless sandbox.

A regular user unpacks the image below without setting owners (builder.layers.unpack), so there every
file belongs to the user: uid 0 in the sandbox's namespace. Most of a Debian image is root's; the few
entries that are not (/etc/shadow is root:shadow, /var/mail root:mail...) are copied into a small
layer laid over it, their owners set in the namespace, so that a script that changes them (adduser
writes /etc/shadow) leaves the owner the image has, as it does when root runs the build.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Sequence

from builder.debian import rootless
from builder.layers.read import members
from builder.layers.whiteouts import whiteout
from builder.layers.unpack import chain_id
from builder.store.store import LayerRecord, Store

FORMAT = 1


def base_owners(store: Store, layers: Sequence[LayerRecord]) -> dict[str, tuple[int, int]]:
    """Path -> (uid, gid) of each entry of the merged layers not owned by 0:0 (cached per chain of layers)."""
    key = f"{FORMAT}-{chain_id(layers)}"
    cached = store.get_record("base-owners", key)
    if cached is not None:
        return {path: (uid, gid) for path, (uid, gid) in cached["owners"].items()}
    owners: dict[str, tuple[int, int]] = {}
    for layer in layers:
        for member, _ in members(store, layer):
            name = os.path.normpath(member.name.lstrip("/").removeprefix("./"))
            marker = whiteout(name)
            if marker is not None:
                gone = marker.directory if marker.opaque else marker.target
                below = gone + "/" if gone not in ("", ".") else ""
                for path in [p for p in owners if p.startswith(below) or (p == gone and not marker.opaque)]:
                    owners.pop(path)
                continue
            if member.uid or member.gid:
                owners[name] = (member.uid, member.gid)
            else:
                owners.pop(name, None)
    store.put_record("base-owners", key, {"owners": {p: list(ids) for p, ids in sorted(owners.items())}})
    return owners


def owner_layer(lower: Path, owners: dict[str, tuple[int, int]], dest: Path) -> None:
    """Copies of `lower`'s entries named in `owners` under `dest`, owned as `owners` says (in the namespace);
    directories on the way keep the mode and mtime `lower` has (the upper-most layer's directory is the one
    the sandbox sees)."""
    dest.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, int, int, int | None, int | None]] = []
    directories: dict[str, os.stat_result] = {}
    for rel in sorted(owners):
        parts = rel.split("/")
        parents = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        # through a symlink (lib/... in a merged /usr) is not where the entry lives: the real path has its own
        if not all(p in directories or _is_directory(lower / p) for p in parents):
            continue
        source = lower / rel
        try:
            st = os.lstat(source)
        except OSError:
            continue  # not unpacked (a device node)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue
        for parent in parents:
            if parent not in directories:
                directories[parent] = os.lstat(lower / parent)
                (dest / parent).mkdir(exist_ok=True)
        target = dest / rel
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(exist_ok=True)
            directories[rel] = st
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
        uid, gid = owners[rel]
        files.append((target, uid, gid, None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode), None))
    # directories last and children first: a directory's mtime is set once nothing more is written in it
    for rel, st in sorted(directories.items(), reverse=True):
        uid, gid = owners.get(rel, (0, 0))
        files.append((dest / rel, uid, gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)))
    rootless.set_owners(files)


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
