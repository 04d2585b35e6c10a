"""The project as its commit has it, in a directory of its own: what `airbuild verify` rebuilds.

From git (HEAD's tree under the project, checked out as a fresh clone would: submodules too), so
nothing local takes part: no ignored or untracked file, no `.airbuild/` (stat cache, earlier builds). A project outside git,
or a dirty tree verified with --force, is copied as the working tree has it (without `.airbuild/`
and `.git/`). A base file the manifest names outside the project (`rootfs: ../base.tar.gz`) is
linked at the same relative place, so the location the lock pins still names it; the lock's
digest of the base then proves it is the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
    """The project's tree at `commit` as a fresh clone checks it out: every tracked file (`export-ignore` and
    `export-subst` are `git archive`'s, not a checkout's, so neither applies), checkout filters applied (LFS,
    line endings), and each submodule at the commit the tree pins, from its local clone."""
    prefix = _git(project, "rev-parse", "--show-prefix").strip().rstrip("/")
    tree = f"{commit}:{prefix}" if prefix else commit
    _checkout_tree(project, tree, dest)


def _checkout_tree(repository: Path, tree: str, dest: Path) -> None:
    index = dest.parent / f".{dest.name}.index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    try:
        for args in (["read-tree", tree], ["checkout-index", "--all", f"--prefix={dest}{os.sep}"]):
            proc = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise InputError(f"cannot check out {tree} (git {args[0]}): {proc.stderr.strip()}")
    finally:
        index.unlink(missing_ok=True)
    for path, pinned in _submodules(repository, tree):
        clone = repository / path
        if not (clone / ".git").exists():
            raise InputError(f"the submodule {path} is not checked out here, so the commit it pins ({pinned[:12]}) "
                             f"cannot be verified: run `git submodule update --init {path}` first")
        if subprocess.run(["git", "-C", str(clone), "cat-file", "-e", f"{pinned}^{{tree}}"],
                          capture_output=True).returncode != 0:
            raise InputError(f"the submodule {path}'s clone lacks the commit its parent pins ({pinned[:12]}): "
                             f"run `git submodule update {path}` first")
        (dest / path).mkdir(parents=True, exist_ok=True)
        _checkout_tree(clone, pinned, dest / path)
        if (clone / ".git").is_file():  # `gitdir: ...`, as every clone of this layout has it: a build copies it
            shutil.copyfile(clone / ".git", dest / path / ".git")


def _submodules(repository: Path, tree: str) -> list[tuple[str, str]]:
    """(path, pinned commit) of each submodule (gitlink) in `tree`."""
    listing = _git(repository, "ls-tree", "-r", "-z", tree)
    found = []
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "commit":
            found.append((path, sha))
    return found


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
