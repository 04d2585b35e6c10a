"""A change journal for the build server: each project's walk kept current by inotify, not walked again.

An unchanged 10,000-file project costs a build one `stat` per file (scan_project) just to learn that
nothing changed. The build server (builder/cli/server.py) instead watches every directory of a
project it has built, as watchman and git's fsmonitor do, and before each command re-stats only the
paths the kernel said changed. Its forked command gets the result through `tree.use_journal`: the
same list of `Scanned` a walk would make, in the same order, with the same stat results.

The kernel queues an event within the system call that changed the file, so a change finished before
the client connected is read by `refresh` before the command is forked. Anything that could make the
journal wrong makes it forget the project, and the next command walks it again (and the journal
starts over from that walk): the event queue overflowing, a watch that cannot be added (the user's
inotify limit), `.dockerignore` changing, the project directory itself moved or removed, an entry the
walk would refuse (a socket), a file system whose changes need not reach this kernel (network, FUSE).
Files with several hard links are re-stat'ed on every command: a write through another name raises
no event here. A command that runs without the server (AIRBUILD_SERVER=0) or while none runs walks.
Writes through a shared `mmap` raise no event either (as for watchman).
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from builder.common.errors import InputError
from builder.project.ignore import IgnoreRules
from builder.project.tree import Scanned, known_digest, scan_below, signature_digest

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
WATCHED = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
           | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
EVENT_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
MAX_PROJECTS = 8
# File systems whose every change goes through this kernel (and so raises an event here).
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs",
                                "bcachefs", "jfs", "reiserfs", "ramfs"})


class Unwatchable(Exception):
    """The project cannot be (or is no longer) watched exactly: the next command walks it."""


def ignore_key(ignore: IgnoreRules) -> tuple:
    return tuple((p.text, p.exception) for p in ignore.patterns)


@dataclass
class ProjectWatch:
    root: str
    ignore: IgnoreRules
    key: tuple
    entries: dict[str, Scanned] = field(default_factory=dict)
    dirs: dict[int, str] = field(default_factory=dict)       # watch descriptor -> directory's relpath ("" root)
    wds: dict[str, int] = field(default_factory=dict)        # the reverse
    dirty: set[str] = field(default_factory=set)              # relpaths to stat again
    linked: set[str] = field(default_factory=set)             # files with several hard links
    inodes: dict[int, set[str]] = field(default_factory=dict)  # a file's inode -> its names (a link changes all)
    ordered: list[Scanned] | None = None                      # the walk's order, None when entries were added
    digest: str | None = None                                 # its signature_digest, None when anything changed

    def listing(self) -> list[Scanned]:
        if self.ordered is None:
            self.ordered = sorted(self.entries.values(), key=lambda s: s.relpath.split("/"))
        if self.digest is None:
            self.digest = signature_digest(self.ordered)
        copy = list(self.ordered)
        known_digest(copy, self.digest)
        return copy


class Journal:
    """Every project the server watches, on one inotify descriptor (read in the server's own loop)."""

    def __init__(self, log=lambda message: None) -> None:
        self.log = log  # the server's log: what is watched, and why a project is walked again
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        self.projects: dict[str, ProjectWatch] = {}  # by root; oldest first
        self._by_wd: dict[int, ProjectWatch] = {}
        self.overflows = 0

    def close(self) -> None:
        os.close(self.fd)

    # -- what commands see ---------------------------------------------------------------------------

    def lookup(self, root: str, ignore: IgnoreRules) -> list[Scanned] | None:
        """The project's walk as scan_project would make it now, or None: walk it."""
        watch = self.projects.get(root)
        if watch is None or watch.key != ignore_key(ignore):
            return None
        return watch.listing()

    # -- keeping it current --------------------------------------------------------------------------

    def watch(self, root: str) -> bool:
        """Start watching `root` (again): watches first, then the walk, so no change falls between."""
        self.forget(root)
        try:
            kind = _file_system(root)
            if kind not in LOCAL_FILE_SYSTEMS:
                self.log(f"not watching {root}: its file system ({kind or 'unknown'}) may change behind this kernel")
                return False
            ignore = IgnoreRules.for_project(Path(root))
            watch = ProjectWatch(root, ignore, ignore_key(ignore))
            self.projects[root] = watch
            found: list[Scanned] = []
            scan_below(root, ignore, root, "", found, lambda abspath, rel: self._add_watch(watch, abspath, rel))
        except (Unwatchable, OSError, InputError) as exc:
            self.forget(root, f"cannot watch it ({exc})")
            return False
        for item in found:
            self._put(watch, item, None)
            if _linked(item):
                watch.linked.add(item.relpath)
        watch.dirty.clear()
        watch.listing()
        while len(self.projects) > MAX_PROJECTS:
            self.forget(next(iter(self.projects)), f"more than {MAX_PROJECTS} projects watched")
        self.log(f"watching {root}: {len(watch.entries)} entries, {len(watch.dirs)} directories")
        return True

    def forget(self, root: str, why: str | None = None) -> None:
        """Stop watching `root`: its next command walks it (and has the server watch it again)."""
        watch = self.projects.pop(root, None)
        if watch is None:
            return
        if why:
            self.log(f"forgetting {root}: {why}")
        for wd in watch.dirs:
            self._by_wd.pop(wd, None)
            self._libc.inotify_rm_watch(self.fd, wd)

    def refresh(self) -> None:
        """Read every queued event and stat what changed: called before each command is forked."""
        self._read_events()
        for root, watch in list(self.projects.items()):
            try:
                self._apply(watch)
                watch.listing()  # sorted and hashed here, once, not in every command forked after
            except (Unwatchable, OSError, InputError) as exc:
                self.forget(root, f"an event it cannot follow ({exc})")

    def _read_events(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # the descriptor itself failed: nothing it says can be trusted
                for root in list(self.projects):
                    self.forget(root, f"reading its events failed ({exc})")
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = EVENT_HEADER.unpack_from(data, offset)
                name = data[offset + EVENT_HEADER.size:offset + EVENT_HEADER.size + size].rstrip(b"\0")
                offset += EVENT_HEADER.size + size
                self._event(wd, mask, os.fsdecode(name))

    def _event(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:  # events were lost: nothing known can be trusted
            self.overflows += 1
            for root in list(self.projects):
                self.forget(root, "the kernel's event queue overflowed")
            return
        watch = self._by_wd.get(wd)
        if watch is None:
            return
        directory = watch.dirs[wd]
        if mask & IN_IGNORED:  # the kernel dropped the watch: its directory is gone
            del watch.dirs[wd], self._by_wd[wd]
            watch.wds.pop(directory, None)
            if directory == "":
                self.forget(watch.root, "the project directory is gone")
            else:
                watch.dirty.add(directory)
            return
        if not name:  # about the watched directory itself
            if directory == "" and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                self.forget(watch.root, "the project directory moved or is gone")
            elif directory:
                watch.dirty.add(directory)
            return
        rel = f"{directory}/{name}" if directory else name
        if rel == ".dockerignore":  # other ignore rules: the walk decides again
            self.forget(watch.root, ".dockerignore changed")
            return
        watch.dirty.add(rel)
        if directory:
            watch.dirty.add(directory)  # its own mtime moved with the entry

    def _apply(self, watch: ProjectWatch) -> None:
        pending, watch.dirty = watch.dirty | watch.linked, set()
        seen: set[str] = set()
        while pending:
            for rel in sorted(pending, key=lambda r: r.count("/")):  # parents first: a new directory walks below
                self._restat(watch, rel)
            seen |= pending
            # A name linked or unlinked changes the link count (and ctime) of the inode's other names, which
            # raises no event where they are: _put and _unindex named them.
            pending, watch.dirty = watch.dirty - seen, set()

    def _restat(self, watch: ProjectWatch, rel: str) -> None:
        abspath = os.path.join(watch.root, rel)
        parent = rel.rpartition("/")[0]
        try:
            st = os.lstat(abspath)
        except FileNotFoundError:
            self._drop(watch, rel)
            return
        if not stat.S_ISDIR(st.st_mode):  # another name of the same file (a hard link): its link count moved
            watch.dirty |= watch.inodes.get(st.st_ino, set()) - {rel}
        ignored = watch.ignore.ignored(rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        if parent and parent not in watch.wds:  # its directory is not walked (ignored, or gone meanwhile)
            return
        if ignored:
            self._drop(watch, rel)
            if is_dir and watch.ignore.may_reinclude_below(rel):
                self._walk_below(watch, abspath, rel)
            return
        known = watch.entries.get(rel)
        if stat.S_ISLNK(st.st_mode):
            self._drop(watch, rel)
            target = os.readlink(abspath)
            if _escapes(rel, target):
                raise Unwatchable(rel)  # the walk reports it
            self._put(watch, Scanned(rel, abspath, st, target), known)
        elif stat.S_ISREG(st.st_mode):
            if known is not None and not stat.S_ISREG(known.st.st_mode):
                self._drop(watch, rel)
                known = None
            self._put(watch, Scanned(rel, abspath, st), known)
            if _linked(watch.entries[rel]):
                watch.linked.add(rel)
            else:
                watch.linked.discard(rel)
        elif is_dir:
            if known is not None and stat.S_ISDIR(known.st.st_mode) and rel in watch.wds:
                self._put(watch, Scanned(rel, abspath, st), known)
            else:
                self._drop(watch, rel)
                self._put(watch, Scanned(rel, abspath, st), None)
                self._walk_below(watch, abspath, rel)
        else:
            raise Unwatchable(rel)  # a socket or device: the walk reports it

    def _walk_below(self, watch: ProjectWatch, abspath: str, rel: str) -> None:
        found: list[Scanned] = []
        scan_below(watch.root, watch.ignore, abspath, rel + "/", found,
                   lambda path, relpath: self._add_watch(watch, path, relpath))
        for item in found:
            self._put(watch, item, None)
            if _linked(item):
                watch.linked.add(item.relpath)

    def _put(self, watch: ProjectWatch, item: Scanned, known: Scanned | None) -> None:
        watch.digest = None
        if known is not None:
            _unindex(watch, known)
        watch.entries[item.relpath] = item
        if not stat.S_ISDIR(item.st.st_mode):
            names = watch.inodes.setdefault(item.st.st_ino, set())
            names.add(item.relpath)
            if len(names) > 1:
                watch.dirty |= names - {item.relpath}
        if known is None:
            watch.ordered = None
        elif watch.ordered is not None:
            watch.ordered[_index(watch.ordered, item.relpath)] = item

    def _drop(self, watch: ProjectWatch, rel: str) -> None:
        """`rel` and everything below it, with the watches of directories there."""
        known = watch.entries.get(rel)
        if rel not in watch.wds and (known is None or not stat.S_ISDIR(known.st.st_mode)):
            if known is not None:  # a file or link: nothing below it (the common case, without a scan)
                _unindex(watch, known)
                del watch.entries[rel]
                watch.linked.discard(rel)
                watch.ordered = watch.digest = None
            return
        below = rel + "/"
        gone = [path for path in watch.entries if path == rel or path.startswith(below)]
        for path in gone:
            _unindex(watch, watch.entries.pop(path))
            watch.linked.discard(path)
        for path in [p for p in watch.wds if p == rel or p.startswith(below)]:
            wd = watch.wds.pop(path)
            del watch.dirs[wd], self._by_wd[wd]
            self._libc.inotify_rm_watch(self.fd, wd)
        if gone:
            watch.ordered = watch.digest = None

    def _add_watch(self, watch: ProjectWatch, abspath: str, rel: str) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(abspath), WATCHED)
        if wd < 0:
            code = ctypes.get_errno()
            raise Unwatchable(f"{abspath}: {os.strerror(code)}" if code != errno.ENOSPC else "inotify watch limit")
        old = self._by_wd.get(wd)
        if old is not None and old is not watch:  # the same directory in another watched project (nested)
            raise Unwatchable(abspath)
        moved = watch.dirs.get(wd)
        if moved is not None and moved != rel:  # a directory moved within the project: its watch follows it
            watch.wds.pop(moved, None)
        watch.dirs[wd] = rel
        watch.wds[rel] = wd
        self._by_wd[wd] = watch


def _unindex(watch: ProjectWatch, item: Scanned) -> None:
    names = watch.inodes.get(item.st.st_ino)
    if names is not None:
        names.discard(item.relpath)
        if names:
            watch.dirty |= names  # their link count and ctime changed
        else:
            del watch.inodes[item.st.st_ino]


def _index(ordered: list[Scanned], relpath: str) -> int:
    """Where `relpath` is in the walk's order (a binary search on the same key the sort used)."""
    key = relpath.split("/")
    low, high = 0, len(ordered)
    while low < high:
        middle = (low + high) // 2
        if ordered[middle].relpath.split("/") < key:
            low = middle + 1
        else:
            high = middle
    return low


def _linked(item: Scanned) -> bool:
    return not stat.S_ISDIR(item.st.st_mode) and item.st.st_nlink > 1


def _escapes(rel: str, target: str) -> bool:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return posixpath.isabs(target) or resolved == ".." or resolved.startswith("../")


def _file_system(path: str) -> str:
    """The type of the file system `path` is on (from /proc/self/mountinfo), "" when not known."""
    device = os.stat(path).st_dev
    wanted = f"{os.major(device)}:{os.minor(device)}"
    best, best_type = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 10 or fields[2] != wanted:
                continue
            mount_point = fields[4]
            if not (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")):
                continue
            separator = fields.index("-")
            if len(mount_point) > len(best):
                best, best_type = mount_point, fields[separator + 1]
    return best_type
