"""Walk a project into typed file entries, and hash a selection of them as a Merkle tree."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from builder.common.errors import InputError
from builder.project.ignore import IgnoreRules
from builder.project.statcache import StatCache


@dataclass(frozen=True)
class Entry:
    relpath: str          # slash-separated, relative to the project
    kind: str             # "file" | "dir" | "symlink"
    mode: int             # normalised: 0o755 / 0o644 for files, 0o755 dirs, 0o777 links
    size: int = 0
    digest: str = ""      # sha256 hex of a file's content
    link_target: str = ""
    inode: tuple[int, int] | None = None  # (dev, ino) of a multiply-linked file
    abspath: str = ""     # where a file's content is on the host

    @property
    def identity(self) -> str:
        """What the Merkle tree records for this entry besides its name."""
        if self.kind == "file":
            return f"file {self.mode:o} {self.digest}"
        if self.kind == "symlink":
            return f"symlink {self.link_target}"
        return f"dir {self.mode:o}"


@dataclass
class ProjectTree:
    root: Path
    entries: dict[str, Entry]  # every entry the ignore rules allow, dirs included

    def select(self, source: str, exclude: IgnoreRules | None) -> list[Entry]:
        """Entries under `source` ("." for all), minus `exclude`, sorted by path."""
        prefix = "" if source in ("", ".") else source.strip("/") + "/"
        chosen = [
            e for path, e in self.entries.items()
            if (not prefix or path.startswith(prefix)) and not (exclude and exclude.ignored(path))
        ]
        chosen.sort(key=lambda e: e.relpath)
        return chosen


class Scanned(NamedTuple):  # a tuple, not a frozen dataclass: a walk makes one per file, and tuples are cheap
    """One path the ignore rules allow, with its stat: what a walk sees before reading any content."""

    relpath: str
    abspath: str
    st: os.stat_result
    link_target: str = ""

    def signature(self) -> str:
        st = self.st
        return f"{self.relpath}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"


def scan_project(root: Path, ignore: IgnoreRules) -> list[Scanned]:
    """Every path the ignore rules allow, in sorted order, stat'ed but not read.

    In the build server, a change journal (builder/project/journal.py) that has watched the project since
    its last full walk answers instead, with the same list."""
    if _journal is not None:
        kept = _journal(str(root), ignore)
        if kept is not None:
            return kept
    found: list[Scanned] = []
    scan_below(str(root), ignore, str(root), "", found)
    return found


_known_digest: tuple[list[Scanned] | None, str] = (None, "")  # a walk and its signature_digest


def signature_digest(scanned: list[Scanned]) -> str:
    """The walk's stat signatures hashed (the no-op stamp's); once per walk: the no-op check and the stamp a
    build writes share it, and the journal hands it over with its walk (computed once per change)."""
    global _known_digest
    if _known_digest[0] is scanned:
        return _known_digest[1]
    h = hashlib.sha256()
    for item in scanned:
        h.update(item.signature().encode() + b"\n")
    _known_digest = (scanned, h.hexdigest())
    return _known_digest[1]


def known_digest(scanned: list[Scanned], digest: str) -> None:
    """`digest` is signature_digest(scanned), already computed."""
    global _known_digest
    _known_digest = (scanned, digest)


# The build server's change journal: (project root, ignore rules) -> the walk's list, or None (walk it).
_journal: Callable[[str, IgnoreRules], list[Scanned] | None] | None = None


def use_journal(lookup: Callable[[str, IgnoreRules], list[Scanned] | None] | None) -> None:
    global _journal
    _journal = lookup


def scan_below(root: str, ignore: IgnoreRules, directory: str, relative: str, found: list[Scanned],
               on_directory: Callable[[str, str], None] | None = None) -> None:
    """scan_project's walk from `directory` (`relative`: its path in the project with a trailing slash, or "");
    `on_directory(abspath, relpath)` for each directory it lists, `directory` first."""
    if on_directory is not None:
        on_directory(directory, relative.rstrip("/"))
    with os.scandir(directory) as it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        rel = f"{relative}{child.name}"
        st = child.stat(follow_symlinks=False)
        is_dir = stat.S_ISDIR(st.st_mode)
        if ignore.ignored(rel):
            if is_dir and ignore.may_reinclude_below(rel):
                scan_below(root, ignore, child.path, rel + "/", found, on_directory)
            continue
        if stat.S_ISLNK(st.st_mode):
            found.append(Scanned(rel, child.path, st, _checked_link(Path(root), rel, child.path)))
        elif is_dir or stat.S_ISREG(st.st_mode):
            found.append(Scanned(rel, child.path, st))
            if is_dir:
                scan_below(root, ignore, child.path, rel + "/", found, on_directory)
        else:
            raise InputError("not a regular file, directory or symlink: cannot go into an image layer",
                             path=Path(root) / rel)


def walk_project(root: Path, ignore: IgnoreRules, cache: StatCache,
                 scanned: list[Scanned] | None = None) -> ProjectTree:
    """The project's entries with content hashes (read only where the stat cache cannot answer)."""
    entries: dict[str, Entry] = {}
    for item in scanned if scanned is not None else scan_project(root, ignore):
        rel, st = item.relpath, item.st
        if stat.S_ISDIR(st.st_mode):
            entries[rel] = Entry(rel, "dir", 0o755)
        elif item.link_target:
            entries[rel] = Entry(rel, "symlink", 0o777, link_target=item.link_target)
        else:
            mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            inode = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
            entries[rel] = Entry(rel, "file", mode, st.st_size, cache.digest(item.abspath, rel, st),
                                 inode=inode, abspath=item.abspath)
    # Directories re-included under an ignored parent still need their parents in a layer.
    for rel in list(entries):
        parent = rel.rpartition("/")[0]
        while parent and parent not in entries:
            entries[parent] = Entry(parent, "dir", 0o755)
            parent = parent.rpartition("/")[0]
    cache.retain({p for p, e in entries.items() if e.kind == "file"})
    return ProjectTree(root=root, entries=entries)


def _checked_link(root: Path, relpath: str, abspath: str) -> str:
    target = os.readlink(abspath)
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), target))
    if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise InputError(f"symlink points outside the project ({relpath} -> {target}); "
                         "copy the file in, or ignore it in .dockerignore", path=root / relpath)
    return target


def merkle_root(entries: list[Entry], base: str) -> str:
    """Hash of the tree of `entries`, with paths taken relative to `base` (a directory or "")."""
    children: dict[str, dict] = {}
    for entry in entries:
        rel = entry.relpath[len(base) + 1:] if base else entry.relpath
        node = children
        *dirs, name = rel.split("/")
        for part in dirs:
            node = node.setdefault(part, {"": None})
        if entry.kind == "dir":
            node.setdefault(name, {"": None})
        else:
            node[name] = entry

    def hash_node(node: dict) -> str:
        h = hashlib.sha256()
        for name in sorted(node):
            if name == "":
                continue
            child = node[name]
            identity = f"dir {hash_node(child)}" if isinstance(child, dict) else child.identity
            h.update(f"{name}\0{identity}\n".encode())
        return h.hexdigest()

    return hash_node(children)
