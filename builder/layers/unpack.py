"""Image layers unpacked into a directory, cached in the store by their chain of diff_ids.

Used to run code against an image's own files (DAG validation in a sandbox) without a
container engine. Whiteouts are applied; entries are never written outside the target
(no absolute paths, no `..`, no writing through a symlink an earlier entry made).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tarfile
from pathlib import Path
from typing import Sequence

from builder.layers.read import members
from builder.layers.whiteouts import whiteout
from builder.common.errors import BuildError
from builder.store.entries import COMPLETE, environment_size
from builder.store.store import LayerRecord, Store



def chain_id(layers: Sequence[LayerRecord]) -> str:
    return hashlib.sha256("|".join(r.diff_id for r in layers).encode()).hexdigest()


def unpacked(store: Store, layers: Sequence[LayerRecord]) -> Path:
    """A directory holding the merged filesystem of `layers` (made once per machine)."""
    root = store.root / "rootfs"
    root.mkdir(exist_ok=True)
    target = root / chain_id(layers)
    if (target / COMPLETE).exists():
        store.touch(target)  # a use, for the store's gc (least recently used goes first)
        return target
    with open(root / f"{target.name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE).exists():
            return target
        staging = root / f"{target.name}.tmp"  # written under the lock above: the store's sweep asks it
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for layer in layers:
                _apply(store, layer, staging)
            (staging / COMPLETE).write_text(str(environment_size(staging)))  # its size, for `cache du` and gc
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _apply(store: Store, layer: LayerRecord, dest: Path) -> None:
    real_dest = os.path.realpath(dest)
    for member, open_member in members(store, layer):
        name = os.path.normpath(member.name.lstrip("/").removeprefix("./"))
        if name in (".", "") or name.startswith("..") or "/../" in f"/{name}/":
            continue
        marker = whiteout(name)
        if marker is not None and marker.opaque:
            parent = dest / marker.directory
            if _inside(real_dest, parent) and parent.is_dir():
                for child in parent.iterdir():
                    _remove(child)
            continue
        if marker is not None:
            victim = dest / marker.target
            if _inside(real_dest, victim.parent):
                _remove(victim)
            continue
        path = dest / name
        if not _inside(real_dest, path.parent):
            raise BuildError(f"layer {layer.digest} writes through a symlink out of the image: {name}")
        if member.ischr() or member.isblk() or member.isfifo():
            continue  # device nodes: the sandbox provides its own /dev
        if path.is_symlink() or (path.exists() and not (path.is_dir() and member.isdir())):
            _remove(path)
        _extract(member, open_member, path, dest)


def _extract(member: tarfile.TarInfo, open_member, path: Path, dest: Path) -> None:
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
    elif member.issym():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(member.linkname, path)
    elif member.islnk():
        source = dest / os.path.normpath(member.linkname.lstrip("/").removeprefix("./"))
        if not _inside(os.path.realpath(dest), source.parent):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.link(source, path, follow_symlinks=False)
        return
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(open_member(), out, 1 << 20)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))


def _inside(real_dest: str, path: Path) -> bool:
    resolved = os.path.realpath(path)
    return resolved == real_dest or resolved.startswith(real_dest + os.sep)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
