"""Shared by the `system-packages` rule and the `debian` base: resolve against verified
indexes, lock, fetch the locked `.deb` files, and assemble the layer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from builder.layers.read import find_files, find_symlinks
from builder.debian.fetch import fetch_all
from builder.debian.deb import read_deb
from builder.debian.layer import Package, Tree, record_in_dpkg, with_scripts, unpack
from builder.debian.repo import AptSource, Keyring, Verification, dearmor, is_sources_file, load_source, parse_sources
from builder.debian.resolve import Installed, Request, Universe, installed_from_status, resolve
from builder.debian.base_owners import owner_layer
from builder.debian.maintscripts import driver, run_scripts
from builder.debian.rootless import set_owners, take_back
from builder.debian.scripts import apply_alternatives, ca_certificates, update_ld_cache
from builder.debian.triggers import activated, base_interests, registered
from builder.layers.normalise import normalise_items
from builder.layers.overlay import Recorded, directory_metadata, read_upper, write_items
from builder.common.errors import BuildError
from builder.layers.tar import LayerItem
from builder.store.store import LayerRecord, Store
from builder.common.hashing import json_sha256

HOST_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
VIEW_FORMAT = 2


@dataclass
class BaseView:
    """What installing packages needs to know of the base: dpkg's state, apt's setup, links."""

    files: dict[str, bytes]
    links: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.files.get("var/lib/dpkg/status", b"").decode("utf-8", "replace")

    def sources(self) -> list[AptSource]:
        return parse_sources({p: d for p, d in self.files.items() if is_sources_file(p)})


def _view_file(path: str) -> bool:
    return (path == "var/lib/dpkg/status" or path.startswith(("etc/apt/", "usr/share/keyrings/",
                                                              "var/lib/dpkg/alternatives/", "var/lib/dpkg/triggers/",
                                                              "etc/ld.so.")))


def base_view(store: Store, layers: tuple[LayerRecord, ...], with_links: bool = True) -> BaseView:
    if not layers:
        return BaseView({})
    files = find_files(store, layers, _view_file, cache_name=f"debian-view-{VIEW_FORMAT}")
    links = find_symlinks(store, layers, cache_name="symlinks") if with_links else {}
    return BaseView(files, links)


# -- keyrings ---------------------------------------------------------------------------------

def keyring_for(source: AptSource, view: BaseView, override: tuple[bytes, str] | None) -> Keyring | None:
    """The keys to check `source` with: the manifest's, the source's Signed-By, the base's, or the host's."""
    if override is not None:
        return Keyring(dearmor(override[0]), override[1])
    if source.signed_by:
        if "BEGIN PGP" in source.signed_by:
            return Keyring(dearmor(source.signed_by.encode()), "the key in the apt source")
        keys = b"".join(dearmor(view.files[p.lstrip("/")]) for p in source.signed_by.split()
                        if p.lstrip("/") in view.files)
        if keys:
            return Keyring(keys, f"the base's {source.signed_by}")
    trusted = sorted(p for p in view.files if p.startswith(("etc/apt/trusted.gpg.d/", "etc/apt/keyrings/"))
                     or p in ("etc/apt/trusted.gpg", "usr/share/keyrings/debian-archive-keyring.gpg"))
    if trusted:
        return Keyring(b"".join(dearmor(view.files[p]) for p in trusted), "the base's apt keyrings")
    if HOST_KEYRING.is_file():
        return Keyring(HOST_KEYRING.read_bytes(), f"this machine's {HOST_KEYRING}")
    return None


# -- resolve and lock -----------------------------------------------------------------------------

@dataclass
class Resolved:
    entries: list[dict]
    notes: list[str]


def resolve_online(store: Store, sources: list[AptSource], arch: str, requests: list[Request],
                   installed: dict[str, Installed], keyring_of, where: str, essential: bool = False) -> Resolved:
    verification = Verification()
    indexes = []
    for source in sources:
        indexes += load_source(store, source, arch, keyring_of(source), verification)
    universe = Universe(indexes, arch)
    if essential:
        requests = [Request(name) for name in universe.essential()] + requests
    resolution = resolve(requests, universe, installed, where)
    entries = [lock_entry(c) for c in resolution.chosen]
    notes = []
    if verification.unverified:
        notes.append(f"the Release signatures of {', '.join(verification.unverified)} were NOT verified "
                     "(no gpgv, or no keyring): install gpgv or give a keyring")
    return Resolved(entries, notes)


def lock_entry(c) -> dict:
    return {"name": c.name, "version": c.version, "architecture": c.arch, "sha256": c.sha256,
            "size": c.size, "url": c.url}


def entries_hash(entries) -> str:
    return json_sha256(list(entries))


def sources_json(sources: list[AptSource]) -> list[dict]:
    return [{"uri": s.uri, "suite": s.suite, "components": list(s.components)} for s in sources]


# -- fetch and assemble ---------------------------------------------------------------------------------

def fetch_packages(store: Store, entries, spool: Path | None = None) -> list[Package]:
    """The locked packages, read (each as soon as it is downloaded); with `spool`, their files' bodies are
    files there, not memory."""
    def read(n: int, path: Path) -> Package:
        entry = entries[n]
        deb = read_deb(path, f"{entry['name']}_{entry['version']}_{entry['architecture']}.deb", spool)
        return Package(entry["name"], entry["version"], entry["architecture"], deb)

    return fetch_all(store, [(e["url"], e["sha256"], e.get("size")) for e in entries], then=read)


def install_and_configure(tree: Tree, packages: list[Package], view: BaseView, lower: Path, scratch: Path,
                          epoch: int, env: dict[str, str],
                          lower_owners: dict[str, tuple[int, int]] | None = None) -> tuple[list[LayerItem], list[str]]:
    """Unpack, record as unpacked, and let dpkg configure them in the sandbox over `lower` (the image
    below, unpacked); the layer's items (bodies under `scratch`, which the caller removes) and notes.
    `lower_owners`: as a regular user, the owners of the image's entries not owned by root
    (builder.debian.base_owners), which `lower` on disk does not have."""
    for package in packages:
        unpack(tree, package)
    record_in_dpkg(tree, packages, view.status, unpacked=True)
    base = base_interests(view.files)
    for path, text in registered(base, packages).items():
        if view.files.get(path) != text.encode():
            tree.file(tree.canonical(path, follow_last=True), text.encode())
    upper = scratch / "upper"
    written = tree.sorted_items()
    write_items(written, upper, epoch, lower, move_sources=True, lower_owners=lower_owners)
    notes = list(tree.notes)
    tree.items.clear()  # the bodies are on disk now
    installed = installed_from_status(view.status)
    upgrades = {p.name: installed[p.name].version for p in packages if p.name in installed}
    script = driver(packages, upgrades, activated(base, packages))
    if lower_owners is None:
        run_scripts(lower, upper, scratch, script, env, packages=len(packages))
        items, _ = normalise_items(read_upper(upper), scratch / "normalised", epoch)
    else:
        recorded = _run_rootless(written, upper, lower, lower_owners, scratch, script, env, len(packages))
        items, _ = normalise_items(read_upper(upper, recorded), scratch / "normalised", epoch)
    configured = with_scripts(packages)
    notes.append(f"dpkg configured {len(packages)} packages in a bubblewrap sandbox "
                 f"({len(configured)} with maintainer scripts or triggers)")
    return items, notes


def _run_rootless(written: list[LayerItem], upper: Path, lower: Path, lower_owners: dict[str, tuple[int, int]],
                  scratch: Path, script: str, env: dict[str, str], packages: int) -> dict[str, Recorded]:
    """The scripts run as a regular user: owners set in the user namespace before (the unpacked files',
    the base's in a layer over it), read back there after; the scratch trees handed back to the user."""
    directories = directory_metadata(written, lower, lower_owners)
    owned: list[tuple[Path, int, int, int | None, int | None]] = []
    for item in written:
        meta = directories.get(item.path, item)
        if item.kind != "hardlink" and (meta.uid, meta.gid) != (0, 0):  # a hard link shares its first path's inode
            owned.append((upper / item.path, meta.uid, meta.gid, None if item.kind == "symlink" else meta.mode, None))
    owners = scratch / "owners"
    recorded = None
    try:
        set_owners(owned)
        owner_layer(lower, lower_owners, owners)
        run_scripts(lower, upper, scratch, script, env, owners, packages)
        recorded = take_back(upper)
        return recorded
    finally:  # also when a script failed: what it chowned is removable by the user only once handed back
        for tree in ([upper] if recorded is None else []) + [owners, scratch / "work"]:
            with contextlib.suppress(BuildError):
                take_back(tree)


def install(tree: Tree, packages: list[Package], view: BaseView, arch: str, why: str = "") -> list[str]:
    """Unpack, record in dpkg's database, emulate the scripts; returns notes for the build output.
    Used where the sandbox cannot run (`why`), and for a base bootstrapped from nothing."""
    for package in packages:
        unpack(tree, package)
    record_in_dpkg(tree, packages, view.status)
    notes = list(tree.notes)
    done = []
    names = apply_alternatives(tree, packages, view.files)
    if names:
        done.append(f"alternatives ({', '.join(names)})")
    if any(p.name == "ca-certificates" for p in packages) and ca_certificates(tree):
        done.append("ca-certificates bundle")
    libraries = update_ld_cache(tree, arch, view.files)
    if libraries:
        done.append(f"ld.so.cache (+{libraries} libraries)")
    skipped = with_scripts(packages)
    if skipped:
        notes.append((f"warning: {why}: " if why else "")
                     + f"maintainer scripts and triggers not run for {len(skipped)} packages: {', '.join(skipped)}"
                     + (f"; emulated: {'; '.join(done)}" if done else ""))
    return notes


def layer_items(tree: Tree) -> list[LayerItem]:
    items = tree.sorted_items()
    if not items:
        raise BuildError("the packages installed nothing")
    return items
