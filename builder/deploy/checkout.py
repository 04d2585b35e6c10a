"""The project as its commit has it, in a directory of its own: what `airbuild verify` rebuilds.

From git (`git archive` of HEAD's tree under the project), so nothing local takes part: no
ignored or untracked file, no `.airbuild/` (stat cache, earlier builds). A project outside git,
or a dirty tree verified with --force, is copied as the working tree has it (without `.airbuild/`
and `.git/`). A base file the manifest names outside the project (`rootfs: ../base.tar.gz`) is
linked at the same relative place, so the location the lock pins still names it; the lock's
digest of the base then proves it is the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.bases.layout import split_layout_reference
from builder.common.errors import InputError
from builder.common.paths import OUTPUT_DIR
from builder.project.manifest import BaseSource


@dataclass(frozen=True)
class Checkout:
    project: Path          # the copy, to build
    source: str            # what it holds, for messages: "commit <sha>" or "the working tree"


def checkout(project: Path, into: Path, commit: str | None, outside: list[str]) -> Checkout:
    """`project` at `commit` (None: its working tree) under `into`; `outside`: locations (relative to the
    project) of inputs that may lie outside it, linked in place."""
    ups = max((_ups(location) for location in outside), default=0)
    dest = into.joinpath("src", *(["up"] * ups), project.name)
    dest.mkdir(parents=True)
    if commit is None:
        shutil.copytree(project, dest, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda where, names: [n for n in names if Path(where) == project
                                                     and n in (OUTPUT_DIR, ".git")])
        source = "the working tree"
    else:
        _export(project, commit, dest)
        source = f"commit {commit}"
    for location in outside:
        _link_outside(project, dest, into / "src", location)
    return Checkout(dest, source)


def outside_locations(*bases: BaseSource | None) -> list[str]:
    """The file locations of these bases (rootfs, archive, OCI layout) that point up out of the project."""
    found = []
    for base in bases:
        if base is None or base.kind not in ("rootfs", "archive", "oci"):
            continue
        location = split_layout_reference(base.location)[0] if base.kind == "oci" else base.location
        if _ups(location):
            found.append(location)
    return found


def _ups(location: str) -> int:
    if os.path.isabs(location):
        return 0
    parts = os.path.normpath(location).split(os.sep)
    return next((i for i, part in enumerate(parts) if part != ".."), len(parts))


def _export(project: Path, commit: str, dest: Path) -> None:
    prefix = _git(project, "rev-parse", "--show-prefix").strip().rstrip("/")
    tree = f"{commit}:{prefix}" if prefix else commit
    command = ["git", "-C", str(project), "archive", "--format=tar", tree]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                archive.extractall(dest, filter="tar")  # no absolute paths, no `..`: the tree is git's
        except tarfile.TarError as exc:
            proc.kill()
            raise InputError(f"cannot export {tree} with git archive: {exc}") from None
        error = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise InputError(f"cannot export the project at {commit[:12]} (git archive {tree}): {error}")


def _git(project: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"git {' '.join(args)} failed in {project}: {proc.stderr.strip()}")
    return proc.stdout


def _link_outside(project: Path, dest: Path, root: Path, location: str) -> None:
    link = Path(os.path.normpath(dest / location))
    target = (project / location).resolve()
    if not link.is_relative_to(root) or link.exists() or link.is_symlink() or not target.exists():
        return  # not reachable from here, or missing: the build says so, naming the location
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
