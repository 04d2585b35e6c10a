"""`cache verify` for unpacked environments: each one compared, file by file, with the layers it was unpacked from.

An environment (`rootfs/CHAIN/`) records the layers it holds (`.airbuild-layers.json`, written with it).
Its regular files must have the content the merged layers give, its symlinks the same targets, nothing
the layers show may be missing. What airbuild itself adds is allowed: directories (the sandbox's mount
points) and bytecode (`.pyc`, compiled into the copy after validation imported from source). Hard links,
device nodes and FIFOs are not compared (unpacking links or skips them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.common.errors import AirbuildError, NotLocal
from builder.layers.read import merged_entries
from builder.store.entries import COMPLETE, environments
from builder.store.store import LayerRecord, Store

LAYERS_FILE = ".airbuild-layers.json"
CHUNK = 1 << 20
AIRBUILD_FILES = {COMPLETE, LAYERS_FILE}


@dataclass(frozen=True)
class EnvironmentProblem:
    path: str      # relative to the store
    reason: str


def record_layers(environment: Path, layers: list[LayerRecord]) -> None:
    (environment / LAYERS_FILE).write_bytes(json.dumps([json.loads(r.to_json()) for r in layers]).encode())


def recorded_layers(environment: Path) -> list[LayerRecord] | None:
    try:
        return [LayerRecord(**entry) for entry in json.loads((environment / LAYERS_FILE).read_bytes())]
    except (OSError, ValueError, TypeError):
        return None


def check_environments(store: Store, chain_id: Callable[[list[LayerRecord]], str],
                       progress: Callable[[int, int], None] | None = None) -> tuple[int, list[EnvironmentProblem]]:
    """(environments checked, what is wrong): a damaged environment is removed (it is unpacked again, from its
    layers, when next needed); one whose layers left the store or that predates the record is skipped."""
    checked, problems = 0, []
    found = environments(store.root)
    for done, environment in enumerate(found, 1):
        if (environment / COMPLETE).exists():
            reason = _problem(store, environment, chain_id)
            if reason is not False:
                checked += 1
            if isinstance(reason, str):
                problems.append(EnvironmentProblem(str(environment.relative_to(store.root)), reason))
                shutil.rmtree(environment, ignore_errors=True)
        if progress is not None:
            progress(done, len(found))
    return checked, problems


def _problem(store: Store, environment: Path, chain_id) -> str | None | bool:
    """Why the environment is damaged; None if it is intact; False if it cannot be checked."""
    layers = recorded_layers(environment)
    if layers is None or not all(store.has_blob(layer.digest) for layer in layers):
        return False
    if chain_id(layers) != environment.name:
        return f"its layer record names another chain ({chain_id(layers)[:12]}...)"
    shown: set[str] = set()
    try:
        for path, member, open_member in merged_entries(store, layers):
            if path in AIRBUILD_FILES:
                continue  # airbuild's own markers replaced whatever a layer had there
            shown.add(path)
            reason = _differs(environment / path, member, open_member)
            if reason:
                return f"/{path}: {reason}"
    except NotLocal:
        return False  # a layer left the store meanwhile
    except AirbuildError as exc:
        return f"its layers cannot be read ({exc})"
    return _extra(environment, shown)


def _differs(path: Path, member, open_member) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None if member.islnk() or member.ischr() or member.isblk() or member.isfifo() else "missing"
    if member.isdir():
        return None if stat.S_ISDIR(st.st_mode) else "not a directory"
    if member.issym():
        return None if stat.S_ISLNK(st.st_mode) and os.readlink(path) == member.linkname else "another symlink"
    if not member.isreg() or path.suffix == ".pyc":
        return None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size != member.size:
        return f"{st.st_size} bytes, the layers say {member.size}"
    expected, actual = hashlib.sha256(), hashlib.sha256()
    source = open_member()
    while chunk := source.read(CHUNK):
        expected.update(chunk)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            actual.update(chunk)
    return None if expected.digest() == actual.digest() else "its content differs from the layers'"


def _extra(environment: Path, shown: set[str]) -> str | None:
    """A file or symlink the layers do not show (but airbuild's own and bytecode)."""
    for dirpath, dirnames, filenames in os.walk(environment):
        relative = os.path.relpath(dirpath, environment)
        for name in filenames:
            path = name if relative == "." else os.path.join(relative, name)
            if path in shown or name.endswith(".pyc") or (relative == "." and name in AIRBUILD_FILES):
                continue
            return f"/{path}: not in its layers"
    return None
