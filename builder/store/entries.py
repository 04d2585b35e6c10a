"""What the store holds, entry by entry: its kind, size and when it was last used (its mtime, touched on use).

    blobs/sha256/<hex>     layer blobs, wheels, debs, image metadata (told apart by their first bytes)
    layers/, compressed/   layer records
    rootfs/<chain>/        unpacked environments (the DAG sandbox's)
    dag-results/, dag-runs/, astro-tests/   validation results
    <other>/<name>.json    other records (base resolutions, Debian indexes...)
    tmp/                   work in progress (swept when its writer's lock is free)
    quarantine/            what `cache verify` found corrupt
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from builder.common.atomic import is_temp

LAYER_BLOBS, LAYER_RECORDS, WHEELS, DEBS, METADATA = "layer blobs", "layer records", "wheels", "debs", "image metadata"
ENVIRONMENTS, VALIDATION, RECORDS, OTHER_BLOBS = "unpacked environments", "validation results", "other records", "other blobs"
QUARANTINED = "quarantined"
KINDS = (LAYER_BLOBS, LAYER_RECORDS, WHEELS, DEBS, ENVIRONMENTS, VALIDATION, METADATA, RECORDS, OTHER_BLOBS, QUARANTINED)

BLOBS = Path("blobs") / "sha256"
LAYER_RECORD_DIRS = ("layers", "compressed")
VALIDATION_DIRS = ("dag-results", "dag-runs", "astro-tests")
NOT_RECORDS = {"blobs", "tmp", "rootfs", "quarantine", "logs"}
COMPLETE = ".airbuild-complete"  # in an unpacked environment: written last, holds its size in bytes


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str
    size: int
    used: float  # mtime: when it was written or last used (touched at most hourly)


def usage(root: Path) -> dict[str, dict[str, int]]:
    """kind -> {"count", "bytes"}, every kind listed (zero when absent), in KINDS order."""
    out = {kind: {"count": 0, "bytes": 0} for kind in KINDS}
    for entry in entries(root):
        out[entry.kind]["count"] += 1
        out[entry.kind]["bytes"] += entry.size
    return out


def blob_kind(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return OTHER_BLOBS
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd" or head[257:262] == b"ustar":
        return LAYER_BLOBS
    if head[:4] == b"PK\x03\x04":
        return WHEELS
    if head[:8] == b"!<arch>\n":
        return DEBS
    if head[:1] == b"{":
        return METADATA
    return OTHER_BLOBS


def record_kind(directory: str) -> str:
    if directory in LAYER_RECORD_DIRS:
        return LAYER_RECORDS
    return VALIDATION if directory in VALIDATION_DIRS else RECORDS


def record_dirs(root: Path) -> Iterator[Path]:
    try:
        found = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in found:
        if entry.is_dir(follow_symlinks=False) and entry.name not in NOT_RECORDS:
            yield Path(entry.path)


def entries(root: Path, kinds: bool = True) -> Iterator[Entry]:
    """Every entry of the store but work in progress; `kinds=False` skips reading blobs' first bytes."""
    for entry in _files(root / BLOBS):
        yield Entry(Path(entry.path), blob_kind(Path(entry.path)) if kinds else OTHER_BLOBS, *_size_used(entry))
    for directory in record_dirs(root):
        for entry in _files(directory):
            if entry.name.endswith(".json"):
                yield Entry(Path(entry.path), record_kind(directory.name), *_size_used(entry))
    for env in environments(root):
        yield Entry(env, ENVIRONMENTS, environment_size(env), env.stat().st_mtime)
    for entry in _files(root / "quarantine"):
        yield Entry(Path(entry.path), QUARANTINED, *_size_used(entry))


def environments(root: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(root / "rootfs")
                      if e.is_dir(follow_symlinks=False) and not e.name.endswith(".tmp"))
    except FileNotFoundError:
        return []


def environment_size(env: Path) -> int:
    try:
        text = (env / COMPLETE).read_text().strip()
        if text.isdigit():
            return int(text)
    except OSError:
        pass
    total, seen = 0, set()
    for dirpath, _, filenames in os.walk(env):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _files(directory: Path) -> Iterator[os.DirEntry]:
    try:
        found = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in found:
        if not is_temp(entry.name) and entry.is_file(follow_symlinks=False):
            yield entry


def _size_used(entry: os.DirEntry) -> tuple[int, float]:
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return 0, 0.0
    return st.st_size, st.st_mtime


def remove(path: Path) -> None:
    """Remove a file or a whole directory tree, read-only directories included (an unpacked image has some)."""
    if path.is_dir() and not path.is_symlink():
        def writable(func, name, _exc):
            parent = os.path.dirname(name)
            try:
                os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
                if func in (os.open, os.scandir, os.lstat):  # a directory it could not enter (mode 000)
                    os.chmod(name, os.lstat(name).st_mode | stat.S_IRWXU)
                    remove(Path(name))
                else:
                    func(name)
            except OSError:
                pass
        shutil.rmtree(path, onerror=writable)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
