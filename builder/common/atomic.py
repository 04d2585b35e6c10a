"""Crash-safe file writes: a temp file in the same directory, locked by its writer, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from builder.common.locks import hold_fd, unheld


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside `path`, locked by this process until it is renamed or removed."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        if hold_fd(fd, Path(tmp)):
            return fd, tmp
        os.close(fd)  # a sweep took it before our lock: it is gone, make another


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o644, fsync: bool = True) -> Iterator[BinaryIO]:
    """Yield a file that appears at `path` whole, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)  # still locked: a sweep never sees this temp free while it exists
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    with atomic_writer(path, mode=mode, fsync=fsync) as handle:
        handle.write(data)


def is_temp(name: str) -> bool:
    """Whether `name` is one of atomic_writer's temp files."""
    return name.startswith(".") and name.endswith(".tmp")


def sweep_temps(directory: Path) -> int:
    """Remove the temp files in `directory` whose writer died (its lock is free); how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if is_temp(entry.name) and entry.is_file(follow_symlinks=False):
            with unheld(Path(entry.path)) as free:
                if free:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed += 1
    return removed
