"""What maintainer scripts usually do that an image needs, done without running them.

- the shared-library cache (`/etc/ld.so.cache`, libc-bin's ldconfig trigger);
- `update-alternatives --install` calls a package's postinst makes: the links in
  `/etc/alternatives`, the master and slave links, dpkg's admin file;
- ca-certificates: `/etc/ca-certificates.conf`, the `/etc/ssl/certs/*.pem` links and
  the `ca-certificates.crt` bundle (what update-ca-certificates writes; the OpenSSL
  subject-hash links are not made: OpenSSL and Python read the bundle);
- for a bootstrapped base: the accounts base-passwd writes (`/etc/passwd`, `/etc/group`),
  the defaults base-files copies into /etc and /root, users the manifest names.

Anything else a script does (system users, py3compile, debconf questions) is skipped,
and the build lists the packages whose scripts were not run.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from builder.layers.tar import LayerItem
from builder.debian.ldcache import CacheEntry, elf_soname, parse_cache, write_cache
from builder.debian.layer import Package, Tree

ALTERNATIVES = "var/lib/dpkg/alternatives"
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "i386": "i386-linux-gnu",
            "armhf": "arm-linux-gnueabihf", "ppc64el": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}
LIBRARY = re.compile(r"^(lib.*|ld-.*)\.so(\.|$)")


# -- the shared-library cache ---------------------------------------------------------------

def library_dirs(arch: str, conf: dict[str, bytes]) -> list[str]:
    """Directories ldconfig scans, in its order: ld.so.conf (with includes), then the system ones."""
    dirs: list[str] = []

    def read(path: str, depth: int = 0) -> None:
        text = conf.get(path, b"").decode("utf-8", "replace")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include "):
                pattern = line.split(None, 1)[1].lstrip("/")
                regex = re.compile("^" + re.escape(pattern).replace(r"\*", "[^/]*") + "$")
                for name in sorted(p for p in conf if regex.match(p)):
                    if depth < 5:
                        read(name, depth + 1)
            elif line.startswith("/"):
                dirs.append(line.rstrip("/"))

    read("etc/ld.so.conf")
    triplet = TRIPLETS.get(arch)
    system = ([f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []) + ["/lib", "/usr/lib"]
    return dirs + system


def update_ld_cache(tree: Tree, arch: str, base_files: dict[str, bytes]) -> int:
    """Add the layer's shared libraries to the base's cache; the number of entries added."""
    conf = {p: d for p, d in base_files.items() if p.startswith("etc/ld.so.conf")}
    for path, item in tree.items.items():
        if path.startswith("etc/ld.so.conf") and item.kind == "file":
            conf[path] = tree.content(path)
    base_entries = parse_cache(base_files.get("etc/ld.so.cache", b""))
    added: list[CacheEntry] = []
    seen_dirs: set[str] = set()
    for directory in library_dirs(arch, conf):
        real = tree.canonical(directory.lstrip("/"), follow_last=True)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        for path in sorted(p for p in tree.items if posixpath.dirname(p) == real):
            name = posixpath.basename(path)
            if not LIBRARY.match(name):
                continue
            data = tree.content(path)
            found = elf_soname(data) if data else None
            if found is None:
                continue
            soname, flags = found
            soname = soname or name
            if tree.exists(f"{real}/{soname}"):
                added.append(CacheEntry(flags, soname, f"{directory}/{soname}"))
    known = {(e.key, e.value) for e in base_entries}
    new = [e for e in added if (e.key, e.value) not in known]
    if new or "etc/ld.so.cache" not in base_files:
        tree.file(tree.canonical("etc/ld.so.cache", follow_last=True), write_cache(base_entries + added))
    return len(new)


# -- update-alternatives --------------------------------------------------------------------

@dataclass
class AlternativeGroup:
    link: str
    slaves: list[tuple[str, str]] = field(default_factory=list)            # (name, link)
    choices: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)  # path -> (priority, slave paths)


def install_calls(script: str) -> list[list[str]]:
    """The `update-alternatives --install ...` argument lists a shell script makes (literal ones only)."""
    joined = re.sub(r"\\\n", " ", script)
    calls = []
    for line in joined.splitlines():
        match = re.search(r"update-alternatives\s+(.*--install\s.*)", line)
        if not match or "$" in match.group(1):
            continue
        try:
            words = shlex.split(match.group(1).split(";")[0].split("||")[0].split("&&")[0])
        except ValueError:
            continue
        calls.append(words[words.index("--install") + 1:])
    return calls


def parse_admin(text: str) -> AlternativeGroup | None:
    lines = text.split("\n")
    if len(lines) < 3:
        return None
    group = AlternativeGroup(lines[1])
    i = 2
    while i + 1 < len(lines) and lines[i]:
        group.slaves.append((lines[i], lines[i + 1]))
        i += 2
    i += 1
    while i + 1 < len(lines) and lines[i]:
        path, priority = lines[i], lines[i + 1]
        slave_paths = lines[i + 2:i + 2 + len(group.slaves)]
        group.choices[path] = (int(priority) if priority.lstrip("-").isdigit() else 0,
                               {name: p for (name, _), p in zip(group.slaves, slave_paths) if p})
        i += 2 + len(group.slaves)
    return group


def apply_alternatives(tree: Tree, packages: list[Package], base_files: dict[str, bytes]) -> list[str]:
    """Make the links the packages' postinst would; the alternative names handled."""
    groups: dict[str, AlternativeGroup] = {}
    for package in packages:
        script = package.deb.control_files.get("postinst", (0, b""))[1].decode("utf-8", "replace")
        for args in install_calls(script):
            if len(args) < 4 or not args[3].lstrip("-").isdigit():
                continue
            link, name, path, priority = args[:4]
            group = groups.get(name)
            if group is None:
                base = base_files.get(f"{ALTERNATIVES}/{name}")
                group = (parse_admin(base.decode("utf-8", "replace")) if base else None) or AlternativeGroup(link)
                groups[name] = group
            slave_paths = {}
            rest = args[4:]
            for i in range(0, len(rest) - 3, 4):
                if rest[i] == "--slave":
                    slave_link, slave_name, slave_path = rest[i + 1:i + 4]
                    if slave_name not in dict(group.slaves):
                        group.slaves.append((slave_name, slave_link))
                    slave_paths[slave_name] = slave_path
            group.choices[path] = (int(priority), slave_paths)
    for name in sorted(groups):
        _write_group(tree, name, groups[name])
    return sorted(groups)


def _write_group(tree: Tree, name: str, group: AlternativeGroup) -> None:
    best = max(sorted(group.choices), key=lambda p: group.choices[p][0])
    _, slave_paths = group.choices[best]
    tree.symlink(f"etc/alternatives/{name}", best)
    tree.symlink(tree.place(group.link.lstrip("/")), f"/etc/alternatives/{name}")
    for slave_name, slave_link in group.slaves:
        target = slave_paths.get(slave_name)
        if target and tree.exists(target.lstrip("/")):
            tree.symlink(f"etc/alternatives/{slave_name}", target)
            tree.symlink(tree.place(slave_link.lstrip("/")), f"/etc/alternatives/{slave_name}")
    lines = ["auto", group.link]
    for slave_name, slave_link in group.slaves:
        lines += [slave_name, slave_link]
    lines.append("")
    for path in sorted(group.choices):
        priority, paths = group.choices[path]
        lines += [path, str(priority)] + [paths.get(s, "") for s, _ in group.slaves]
    lines += ["", ""]
    tree.file(f"{ALTERNATIVES}/{name}", "\n".join(lines).encode())


# -- ca-certificates ------------------------------------------------------------------------

CA_HEADER = """\
# This file lists certificates that you wish to use or to ignore to be
# installed in /etc/ssl/certs.
# update-ca-certificates(8) will update /etc/ssl/certs by reading this file.
#
# This is autogenerated by dpkg-reconfigure ca-certificates.
# Certificates should be installed under /usr/share/ca-certificates
# and files with extension '.crt' is recognized as available certs.
#
# line begins with # is comment.
# line begins with ! is certificate filename to be deselected.
#
"""


def ca_certificates(tree: Tree) -> int:
    """update-ca-certificates for the certificates the layer adds; how many were linked."""
    root = tree.canonical("usr/share/ca-certificates", follow_last=True)
    certs = sorted(p[len(root) + 1:] for p, item in tree.items.items()
                   if p.startswith(root + "/") and p.endswith(".crt") and item.kind == "file")
    if not certs:
        return 0
    certs_dir = tree.canonical("etc/ssl/certs", follow_last=True)
    tree.file(tree.canonical("etc/ca-certificates.conf", follow_last=True),
              (CA_HEADER + "".join(f"{c}\n" for c in certs)).encode())
    bundle = b""
    for cert in certs:
        data = tree.content(f"{root}/{cert}")
        bundle += data if data.endswith(b"\n") else data + b"\n"
        pem = posixpath.basename(cert)[:-len(".crt")] + ".pem"
        tree.symlink(f"{certs_dir}/{pem}", f"/usr/share/ca-certificates/{cert}")
    tree.file(f"{certs_dir}/ca-certificates.crt", bundle)
    return len(certs)


# -- a base from scratch ------------------------------------------------------------------------

BASE_FILES_DEFAULTS = {  # what base-files' postinst installs when missing
    "usr/share/base-files/nsswitch.conf": "etc/nsswitch.conf",
    "usr/share/base-files/profile": "etc/profile",
    "usr/share/base-files/dot.profile": "root/.profile",
    "usr/share/base-files/dot.bashrc": "root/.bashrc",
    "usr/share/base-files/motd": "etc/motd",
    "usr/share/base-files/info.dir": "usr/share/info/dir",
}


def base_files_defaults(tree: Tree) -> None:
    for source, dest in BASE_FILES_DEFAULTS.items():
        data = tree.content(source)
        if data is not None and not tree.exists(dest):
            tree.file(tree.canonical(dest), data)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def accounts(tree: Tree, users: list[User]) -> None:
    """/etc/passwd and /etc/group from base-passwd's masters (update-passwd), plus `users` with their homes."""
    master = (tree.content("usr/share/base-passwd/passwd.master") or b"root:*:0:0:root:/root:/bin/sh\n").decode()
    passwd = "".join(":".join([f[0], "x", *f[2:]]) + "\n" for f in (ln.split(":") for ln in master.splitlines()) if len(f) > 2)
    group = (tree.content("usr/share/base-passwd/group.master") or b"root:x:0:\n").decode()
    shadow = "".join(f"{line.split(':', 1)[0]}:*:0:0:99999:7:::\n" for line in passwd.splitlines() if line)
    for user in users:
        passwd += f"{user.name}:x:{user.uid}:{user.gid}::{user.home}:{user.shell}\n"
        shadow += f"{user.name}:*:0:0:99999:7:::\n"
        home = user.home.strip("/")
        if home and not tree.exists(home):
            tree.add(tree_dir(home, user.uid, user.gid))
    tree.file("etc/passwd", passwd.encode())
    tree.file("etc/group", group.encode())
    tree.file("etc/shadow", shadow.encode(), 0o640, 0, 42)


def tree_dir(path: str, uid: int = 0, gid: int = 0, mode: int = 0o755):
    return LayerItem(path, "dir", mode, uid, gid)
