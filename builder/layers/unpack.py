"""Image layers unpacked into a directory, cached in the store by their chain of diff_ids.

Used to run code against an image's own files (DAG validation in a sandbox) without a
container engine. Whiteouts are applied; entries are never written outside the target
(no absolute paths, no `..`, no writing through a symlink an earlier entry made, no hard link
to a file outside). Device nodes and FIFOs are skipped (the sandbox provides its own /dev).
Sparse files stay sparse (only their data is written), and what a layer writes is bounded:
at most `AIRBUILD_MAX_UNPACKED_BYTES` (default 32 GiB) of file data for the whole image, and
never more than the disk has free, so a small blob of zeros cannot fill the disk.
`in_root` resolves a path as the image would see it, for anything else that writes into the copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Sequence

from builder.layers.env_check import AIRBUILD_FILES, record_layers
from builder.layers.read import members
from builder.layers.whiteouts import whiteout
from builder.common.errors import BuildError, InputError
from builder.store.entries import COMPLETE, environment_size
from builder.store.store import LayerRecord, Store

ENV_MAX_BYTES = "AIRBUILD_MAX_UNPACKED_BYTES"
DEFAULT_MAX_BYTES = 32 << 30
FREE_SPACE_KEPT = 256 << 20   # what unpacking leaves free on the store's disk
MAX_SYMLINK_HOPS = 40


def max_unpacked_bytes() -> int:
    raw = os.environ.get(ENV_MAX_BYTES, "")
    if not raw:
        return DEFAULT_MAX_BYTES
    if not raw.isdigit():
        raise InputError(f"{ENV_MAX_BYTES} must be a whole number of bytes, got {raw!r}")
    return int(raw)


class _Budget:
    """File data written so far against the limit and the disk's free space."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.limit = max_unpacked_bytes()
        self.written = 0

    def take(self, size: int, layer: LayerRecord, name: str) -> None:
        self.written += size
        if self.written > self.limit:
            raise InputError(f"base layer {layer.digest}: unpacking it would write more than {self.limit} bytes "
                             f"of file data ({name} is {size} bytes); refusing (a decompression bomb?), "
                             f"or raise {ENV_MAX_BYTES}")
        if size > 64 << 20:
            disk = os.statvfs(self.dest)
            free = disk.f_bavail * disk.f_frsize
            if size > free - FREE_SPACE_KEPT:
                raise BuildError(f"base layer {layer.digest}: {name} is {size} bytes, but the store's disk has "
                                 f"{free} bytes free")


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
            budget = _Budget(staging)
            for layer in layers:
                _apply(store, layer, staging, budget)
            for marker in AIRBUILD_FILES:  # airbuild's names at the root: whatever a layer put there goes (a
                _remove(staging / marker)  # directory would fail the write, a symlink would lead it outside)
            record_layers(staging, list(layers))  # what `cache verify` compares it with
            (staging / COMPLETE).write_text(str(environment_size(staging)))  # its size, for `cache du` and gc
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _apply(store: Store, layer: LayerRecord, dest: Path, budget: _Budget) -> None:
    real_dest = os.path.realpath(dest)
    inside: set[Path] = set()  # directories known to resolve inside; forgotten when a link or removal could change that
    for member, open_member in members(store, layer):
        name = os.path.normpath(member.name.lstrip("/").removeprefix("./"))
        if name in (".", "") or name == ".." or name.startswith("../"):
            continue
        marker = whiteout(name)
        if marker is not None:
            inside.clear()
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
        if path.parent not in inside:
            if not _inside(real_dest, path.parent):
                raise BuildError(f"layer {layer.digest} writes through a symlink out of the image: {name}")
            inside.add(path.parent)
        if member.ischr() or member.isblk() or member.isfifo():
            continue  # device nodes: the sandbox provides its own /dev
        if member.issym() or path.is_symlink() or (path.exists() and not (path.is_dir() and member.isdir())):
            inside.clear()
            _remove(path)
        if member.isreg():
            budget.take(sum(size for _, size in member.sparse) if member.sparse else member.size, layer, name)
        try:
            _extract(member, open_member, path, dest)
        except (tarfile.TarError, zlib.error, gzip.BadGzipFile, EOFError) as exc:
            raise InputError(f"cannot read base layer {layer.digest}: {name}: {exc}") from None
        except ValueError as exc:  # a NUL in a name or link target, which no filesystem call takes
            raise InputError(f"base layer {layer.digest}: cannot unpack {name!r}: {exc}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
                raise BuildError(f"cannot unpack base layer {layer.digest} under {dest}: {exc.strerror}") from None
            # an entry this filesystem cannot hold (a name too long, an empty link target...)
            raise InputError(f"base layer {layer.digest}: cannot unpack {name!r}: {exc.strerror or exc}") from None


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
            if member.sparse:
                _write_sparse(member, open_member(packed=True), out)
            else:
                shutil.copyfileobj(open_member(), out, 1 << 20)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))


def _write_sparse(member: tarfile.TarInfo, source, out) -> None:
    """Only a sparse member's data regions (`source`: those, packed); the holes stay holes."""
    for offset, size in member.sparse:
        out.seek(offset)
        left = size
        while left > 0:
            data = source.read(min(left, 1 << 20))
            if not data:
                break
            out.write(data)
            left -= len(data)
    out.truncate(member.size)


def in_root(rootfs: Path, path: str) -> Path:
    """`path` resolved as the image would, symlinks included (absolute ones from `rootfs`), never leaving it."""
    parts, resolved, hops = [p for p in path.split("/") if p], [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        if part == ".":
            continue
        candidate = rootfs.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise InputError(f"the image's {path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return rootfs.joinpath(*resolved)


def _inside(real_dest: str, path: Path) -> bool:
    resolved = os.path.realpath(path)
    return resolved == real_dest or resolved.startswith(real_dest + os.sep)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
