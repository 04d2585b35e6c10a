"""`base: {debian: {suite, packages}}`: a Debian base image built from packages, no Docker, no registry.

The essential set plus the named packages, resolved with the same resolver as
packages.txt, locked in astro.lock's `debian-base` section, and unpacked into one
layer the way a bootstrap would leave it: merged /usr, dpkg's database, /etc/passwd
and /etc/group (plus the manifest's users), CA certificates, the library cache,
apt sources pointing at the archive it came from; its config sets PATH, and AIRFLOW_HOME and
PYTHONPATH at the project's workdir as the Astro runtime does. The base's identity (its digest in
the lock) is the hash of the locked package set and the settings that shape the
layer, so the same lock gives the same base everywhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from builder.bases.image import BaseImage, scratch
from builder.layers.compress import Codec
from builder.debian.install import (HOST_KEYRING, BaseView, entries_hash, fetch_packages, install, layer_items, resolve_online,
                                 sources_json)
from builder.debian.layer import Tree
from builder.debian.repo import AptSource, Keyring, dearmor, parse_sources
from builder.debian.resolve import Request
from builder.debian.scripts import User, accounts, base_files_defaults, tree_dir
from builder.common.errors import InputError, NotLocal
from builder.layers.tar import store_layer
from builder.project.lock import LockSection, LockState
from builder.project.manifest import DebianBase
from builder.oci.descriptors import Platform
from builder.store.store import LayerRecord, Store
from builder.common.hashing import json_sha256

SECTION = "debian-base"
FORMAT = 1
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib"}
LIB64 = {"amd64": "usr/lib64", "ppc64el": "usr/lib64", "s390x": "usr/lib64"}
KEYRING_IN_IMAGE = "usr/share/keyrings/debian-archive-keyring.gpg"
HOST_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_mirror(suite: str) -> str | None:
    """The archive this machine's own apt uses for `suite` (or its first Debian archive)."""
    files = {}
    for location in HOST_SOURCES:
        paths = sorted(location.glob("*")) if location.is_dir() else [location] if location.is_file() else []
        for path in paths:
            key = "etc/apt/sources.list" if path.name == "sources.list" else f"etc/apt/sources.list.d/{path.name}"
            files[key] = path.read_bytes()
    sources = parse_sources(files)
    for source in sources:
        if source.suite == suite:
            return source.uri
    plain = [s for s in sources if "-" not in s.suite]
    return plain[0].uri if plain else None


def debian_base(spec: DebianBase, project: Path, store: Store, platform: Platform, codec: Codec,
                lock: LockState | None, epoch: int, workdir: str = "/usr/local/airflow", read_only: bool = False):
    """The base `spec` describes; `read_only` (a plan): only as the lock pins it and the store has it built."""
    arch = platform.architecture
    mirror = (spec.mirror or host_mirror(spec.suite) or "").rstrip("/")
    if not mirror:
        raise InputError("base.debian: no `mirror` given and this machine's apt sources name no Debian archive; "
                         "set base.debian.mirror to the archive's root URL")
    source = AptSource(mirror, spec.suite, tuple(spec.components))
    users = [User(u.name, u.uid, u.gid, u.home or f"/home/{u.name}", u.shell) for u in spec.users]
    shape = {"format": FORMAT, "arch": arch, "users": [u.__dict__ for u in users],
             "sources": sources_json([source])}
    inputs = entries_hash([{**shape, "packages": sorted(set(spec.packages))}])
    what = "the manifest's base.debian"
    section = lock.reusable(SECTION, inputs, what) if lock is not None else None
    if section is None:
        if read_only:
            raise NotLocal("the manifest's base.debian is not pinned by the lock (new, or changed since the lock "
                           "was written): resolving it needs Debian's indexes; `airbuild lock` resolves and pins it")
        keyring = _keyring(spec, project)
        resolved = resolve_online(store, [source], arch, [Request(name) for name in sorted(set(spec.packages))],
                                  {}, lambda s: keyring, "base.debian.packages", essential=True)
        section = LockSection(inputs, tuple(resolved.entries))
    if lock is not None:
        lock.record(SECTION, section)
    digest = "sha256:" + json_sha256({"shape": shape, "packages": list(section.entries)})
    record = _layer(store, codec, section.entries, source, users, arch, digest, epoch, read_only)
    config = scratch(platform).config
    config["config"] = {"Env": [f"PATH={DEFAULT_PATH}", *runtime_env(workdir)], "Cmd": ["bash"]}
    config["rootfs"]["diff_ids"] = [record.diff_id]
    config["history"] = [{"created": "1970-01-01T00:00:00Z",
                          "created_by": f"airbuild: debian {spec.suite} ({len(section.entries)} packages)"}]
    source_files = (str((project / spec.keyring).resolve()),) if spec.keyring else ()
    return BaseImage(f"debian:{spec.suite}", digest, config, (record,), source_files)


def runtime_env(workdir: str) -> list[str]:
    """What the Astro runtime's images set and Airflow needs to find the project: AIRFLOW_HOME (dags/, plugins/,
    airflow.cfg, the SQLite database) and PYTHONPATH (so DAGs import `include.*`), both the project's workdir."""
    return [f"AIRFLOW_HOME={workdir}", f"PYTHONPATH={workdir}"]


def _keyring(spec: DebianBase, project: Path) -> Keyring | None:
    if spec.keyring:
        path = (project / spec.keyring).resolve()
        if not path.is_file():
            raise InputError(f"base.debian.keyring {spec.keyring!r}: no such file ({path})")
        return Keyring(dearmor(path.read_bytes()), str(path))
    return Keyring(HOST_KEYRING.read_bytes(), str(HOST_KEYRING)) if HOST_KEYRING.is_file() else None


def _layer(store: Store, codec: Codec, entries, source: AptSource, users: list[User], arch: str, digest: str,
           epoch: int, read_only: bool) -> LayerRecord:
    key = hashlib.sha256(f"debian-base|{digest}|{epoch}".encode()).hexdigest()
    stored = store.get_layer(key)
    record = store.get_compressed(stored.diff_id, codec.cache_id) if stored else None
    if record is not None:
        return record
    if read_only:
        raise NotLocal(f"the Debian base ({len(entries)} packages) is not built yet; a build makes it")
    with store.building(key):
        stored = store.get_layer(key)
        record = store.get_compressed(stored.diff_id, codec.cache_id) if stored else None
        if record is None:
            spool = store.work_dir("debian-base")  # the files' bodies; locked, so no other process's sweep takes it
            try:
                items = bootstrap_items(store, entries, source, users, arch, spool.path)
                record = store_layer(store, codec, items, epoch)
            finally:
                spool.release()
            store.put_layer(key, record)
    return record


def bootstrap_items(store: Store, entries, source: AptSource, users: list[User], arch: str, spool: Path | None = None):
    links = dict(MERGED_USR)
    if arch in LIB64:
        links["lib64"] = LIB64[arch]
    tree = Tree({})
    for path, target in sorted(links.items()):
        tree.symlink(path, target)
        tree.add(tree_dir(target))
    for path, mode in (("tmp", 0o1777), ("root", 0o700), ("var/tmp", 0o1777), ("run", 0o755),
                       ("var/lib/dpkg/info", 0o755), ("var/lib/dpkg/updates", 0o755)):
        tree.add(tree_dir(path, mode=mode))
    packages = fetch_packages(store, entries, spool)
    install(tree, packages, BaseView({}), arch)
    base_files_defaults(tree)
    accounts(tree, users)
    for name, data in (("available", b""), ("diversions", b""), ("statoverride", b""), ("info/format", b"1\n"),
                       ("arch", f"{arch}\n".encode())):
        tree.file(f"var/lib/dpkg/{name}", data)
    signed_by = f"Signed-By: /{KEYRING_IN_IMAGE}\n" if tree.exists(KEYRING_IN_IMAGE) else ""
    tree.file("etc/apt/sources.list.d/debian.sources",
              (f"Types: deb\nURIs: {source.uri}\nSuites: {source.suite}\n"
               f"Components: {' '.join(source.components)}\n{signed_by}").encode())
    return layer_items(tree)
