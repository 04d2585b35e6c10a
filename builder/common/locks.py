"""File locks (flock): held by open descriptors, so they die with their holder on any host or PID namespace.

A temp file's writer holds a lock on it (or on a `NAME.lock` beside a directory) while it lives;
a sweep removes only what nobody holds. No PIDs: a PID means nothing in another namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator


def lock_new(path: Path, flags: int = os.O_RDWR) -> int:
    """Create (or open) `path` and hold an exclusive lock on it; a descriptor of the file now at `path`.

    A sweep unlinks a file only while it holds the lock, so a lock taken on a file the sweep then
    unlinked is checked for (same inode at `path`) and taken again on a fresh file.
    """
    while True:
        fd = os.open(path, flags | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def hold_fd(fd: int, path: Path) -> bool:
    """Lock an already created file (mkstemp's); False if a sweep removed it before the lock was taken."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    return _same_file(fd, path)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def unheld(path: Path) -> Iterator[bool]:
    """Whether nobody holds `path`'s lock; while the block runs, this process holds it (so it may remove it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold(path: Path, exclusive: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold `path`'s lock for the block; `on_wait` is called once if someone else holds it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _held(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), exclusive, on_wait) as fd:
        yield fd


@contextlib.contextmanager
def hold_directory(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold an exclusive lock on the directory itself (made if missing): no lock file joins what it holds, as
    an OCI layout's directory should hold only the layout."""
    path.mkdir(parents=True, exist_ok=True)
    with _held(os.open(path, os.O_RDONLY | os.O_DIRECTORY), True, on_wait) as fd:
        yield fd


@contextlib.contextmanager
def _held(fd: int, exclusive: bool, on_wait: Callable[[], None] | None) -> Iterator[int]:
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)
