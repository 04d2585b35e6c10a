"""Unpacked `.deb` files -> one layer's items, as dpkg would leave the file system.

Each package's `data.tar` is placed through the directory symlinks the base (or the
layer) has, the way dpkg follows them: with merged /usr, `./lib/x86_64-linux-gnu/...`
lands in `usr/lib/...` and never replaces the `lib -> usr/lib` link. The dpkg database
is updated (`status` entries, `info/<pkg>.list`, md5sums, conffiles, maintainer scripts
kept for a later `dpkg -r`), so `dpkg -l` in the image lists the packages. Maintainer
scripts are not run: deb_scripts emulates what images need from them.

Modes, owners and link targets come from the packages (never normalised: /tmp is 1777,
setuid bits stay); every mtime is the build's epoch, as in every layer.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from builder.debian.control import field_of, raw_paragraphs
from builder.debian.deb import Deb
from builder.layers.tar import LayerItem, with_parents

INFO = "var/lib/dpkg/info"
STATUS = "var/lib/dpkg/status"
INSTALL_SCRIPTS = ("preinst", "postinst", "triggers")  # what dpkg runs at install (triggers: activations)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    deb: Deb

    @property
    def multi_arch_same(self) -> bool:
        return (field_of(self.deb.control, "Multi-Arch") or "") == "same"

    @property
    def info_name(self) -> str:
        return f"{self.name}:{self.arch}" if self.multi_arch_same else self.name


@dataclass
class Tree:
    """The layer being assembled, with the symlinks the merged image will have."""

    links: dict[str, str]                            # path -> target: the base's, then the layer's
    items: dict[str, LayerItem] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def canonical(self, path: str, follow_last: bool = False, depth: int = 0) -> str:
        """`path` with every directory symlink on the way resolved (and the last part too if asked)."""
        if depth > 40:
            return path
        parts = [p for p in path.split("/") if p and p != "."]
        current = ""
        for i, part in enumerate(parts):
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = f"{current}/{part}" if current else part
            last = i == len(parts) - 1
            if (not last or follow_last) and candidate in self.links:
                item = self.items.get(candidate)
                if item is None or item.kind == "symlink":
                    target = self.links[candidate]
                    joined = target if target.startswith("/") else posixpath.join(current, target)
                    candidate = self.canonical(posixpath.normpath(joined).lstrip("/"), True, depth + 1)
            current = candidate
        return current

    def place(self, path: str) -> str:
        """Where a non-directory entry named `path` in a package lands."""
        parent, name = posixpath.split(path)
        parent = self.canonical(parent, follow_last=True) if parent else ""
        return f"{parent}/{name}" if parent else name

    def add(self, item: LayerItem) -> None:
        if item.kind == "dir":
            if item.path in self.items and self.items[item.path].kind == "dir":
                return  # the first package to ship a directory sets its metadata, as with dpkg
        self.items[item.path] = item
        if item.kind == "symlink":
            self.links[item.path] = item.link
        else:
            self.links.pop(item.path, None)

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        self.add(LayerItem(path, "file", mode, uid, gid, len(data), data=data))

    def symlink(self, path: str, target: str) -> None:
        self.add(LayerItem(path, "symlink", 0o777, link=target))

    def content(self, path: str) -> bytes | None:
        """A regular file the layer holds at `path` (following links within the layer)."""
        item = self.items.get(self.canonical(path, follow_last=True))
        if item is None or item.kind != "file":
            return None
        return item.data if item.data is not None else Path(item.source).read_bytes()

    def exists(self, path: str) -> bool:
        return self.canonical(path, follow_last=True) in self.items

    def sorted_items(self) -> list[LayerItem]:
        return with_parents(self.items.values())


def unpack(tree: Tree, package: Package) -> None:
    """Place one package's data.tar entries."""
    placed: dict[str, str] = {}
    for member in package.deb.members:
        if member.kind == "dir":
            path = tree.canonical(member.path, follow_last=True)
            tree.add(LayerItem(path, "dir", member.mode & 0o7777, member.uid, member.gid))
        else:
            path = tree.place(member.path)
            if member.kind == "file":
                tree.add(LayerItem(path, "file", member.mode & 0o7777, member.uid, member.gid, member.size,
                                   source=member.source, data=None if member.source else member.data))
            elif member.kind == "symlink":
                tree.add(LayerItem(path, "symlink", 0o777, member.uid, member.gid, link=member.link))
            else:
                target = placed.get(member.link, tree.place(member.link))
                tree.add(LayerItem(path, "hardlink", member.mode & 0o7777, member.uid, member.gid, link=target))
        placed[member.path] = path
    if package.deb.skipped:
        tree.notes.append(f"{package.name}: left out {len(package.deb.skipped)} device or fifo entries "
                          f"({', '.join(package.deb.skipped[:3])})")


def record_in_dpkg(tree: Tree, packages: list[Package], base_status: str, unpacked: bool = False) -> None:
    """The status file (the base's entries plus ours, sorted) and each package's info files.

    `unpacked`: the packages are recorded as dpkg leaves them after `dpkg --unpack`, for a later
    `dpkg --configure` to run their scripts; otherwise as configured."""
    entries: dict[str, str] = {}
    for raw in raw_paragraphs(base_status):
        name = field_of(raw, "Package")
        if name:
            entries[name] = raw
    for package in packages:
        previous = entries.get(package.name)
        was_installed = previous is not None and "ok installed" in (field_of(previous, "Status") or "")
        configured = field_of(previous, "Version") if was_installed else None
        entries[package.name] = status_entry(package, unpacked, configured)
        info = tree.canonical(INFO, follow_last=True)
        listed = "".join(f"/{m.path}\n" for m in package.deb.members)
        tree.file(f"{info}/{package.info_name}.list", ("/.\n" + listed).encode())
        for name, (mode, data) in sorted(package.deb.control_files.items()):
            if "/" not in name:
                tree.file(f"{info}/{package.info_name}.{name}", data, 0o755 if mode & 0o100 else 0o644)
    status = "".join(entries[name] + "\n\n" for name in sorted(entries))
    tree.file(tree.canonical(STATUS, follow_last=True), status.encode())


def status_entry(package: Package, unpacked: bool = False, configured: str | None = None) -> str:
    """The package's control paragraph as dpkg records it once installed (or unpacked, with the version
    configured before an upgrade, which `postinst configure` is given)."""
    lines = package.deb.control.strip("\n").split("\n")
    out = [lines[0], f"Status: install ok {'unpacked' if unpacked else 'installed'}"] + lines[1:]
    if unpacked and configured:
        at = next((i + 1 for i, line in enumerate(out) if line.startswith("Version:")), len(out))
        out.insert(at, f"Config-Version: {configured}")
    conffiles = conffile_sums(package)
    if conffiles:
        block = ["Conffiles:"] + [f" /{path} {digest}" for path, digest in conffiles]
        at = next((i for i, line in enumerate(out) if line.startswith("Description:")), len(out))
        out[at:at] = block
    return "\n".join(out)


def conffile_sums(package: Package) -> list[tuple[str, str]]:
    listed = package.deb.control_files.get("conffiles", (0, b""))[1].decode("utf-8", "replace")
    sums = {m.path: m.md5 for m in package.deb.members if m.kind == "file"}
    out = []
    for line in listed.splitlines():
        parts = line.split()
        if len(parts) != 1:
            continue  # empty, or flagged (remove-on-upgrade)
        path = parts[0].lstrip("/")
        if path in sums:
            out.append((path, sums[path]))
    return out


def with_scripts(packages: list[Package]) -> list[str]:
    """Packages with install-time maintainer scripts or triggers."""
    return [p.name for p in packages if any(s in p.deb.control_files for s in INSTALL_SCRIPTS)]
