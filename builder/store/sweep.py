"""Remove what writers that died left behind (a crash, SIGKILL, Ctrl-C mid-write), and nothing a live writer holds.

Every temp is locked by its writer (builder.common.locks): a blob being written holds its own file in
tmp/; a work directory `tmp/NAME` holds `tmp/NAME.lock`; an atomic_writer temp (`.NAME.*.tmp`) holds
itself; an environment being unpacked (`rootfs/CHAIN.tmp`) is written under `rootfs/CHAIN.lock`.
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.common.atomic import is_temp, sweep_temps
from builder.common.locks import unheld
from builder.store.entries import BLOBS, record_dirs, remove

LOCK_SUFFIX = ".lock"


def sweep_work(root: Path) -> int:
    """tmp/ and unpacking directories: cheap enough for every store opening."""
    return _sweep_tmp(root / "tmp") + _sweep_unpacking(root / "rootfs")


def sweep_all(root: Path) -> int:
    """Also atomic_writer's temps in every directory of the store (gc, verify)."""
    removed = sweep_work(root)
    for directory in [root / BLOBS, root / "quarantine", *record_dirs(root)]:
        removed += sweep_temps(directory)
    return removed


def _sweep_tmp(tmp: Path) -> int:
    try:
        names = {e.name: e for e in os.scandir(tmp)}
    except FileNotFoundError:
        return 0
    removed = 0
    for name, entry in names.items():
        if name.endswith(LOCK_SUFFIX):
            work = tmp / name.removesuffix(LOCK_SUFFIX)
            with unheld(Path(entry.path)) as free:
                if free:
                    remove(work)  # before its lock file: a directory without one is never live
                    remove(Path(entry.path))
                    removed += 1
        elif f"{name}{LOCK_SUFFIX}" in names:
            continue  # a work directory: decided by its lock file above
        elif entry.is_dir(follow_symlinks=False):
            remove(Path(entry.path))  # no lock file: its writer died between the two removals, or an older airbuild
            removed += 1
        else:
            with unheld(Path(entry.path)) as free:
                if free:
                    remove(Path(entry.path))
                    removed += 1
    return removed


def _sweep_unpacking(rootfs: Path) -> int:
    try:
        staging = [Path(e.path) for e in os.scandir(rootfs) if e.name.endswith(".tmp") and not is_temp(e.name)]
    except FileNotFoundError:
        return 0
    removed = 0
    for path in staging:
        chain = path.name.split(".", 1)[0]
        with unheld(rootfs / f"{chain}{LOCK_SUFFIX}") as free:
            if free:
                remove(path)
                removed += 1
    return removed
