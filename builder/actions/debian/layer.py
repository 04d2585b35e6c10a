"""The system-packages layer: `packages.txt` -> one locked, reproducible layer of Debian packages.

What Astro's ONBUILD `apt-get install` does, without a container: resolve against the
base's dpkg status and its apt sources (or the manifest's `apt`), lock every `.deb` in
astro.lock's `debian` section, then unpack the locked files into a layer. While
packages.txt, the base and the sources are unchanged the lock is reused and nothing
touches the network; the layer itself is keyed by the locked set. Loaded only for a packages.txt
that names packages (builder.actions.debian.action).
"""

from __future__ import annotations

from pathlib import Path

from builder.actions.debian.package_list import Listed
from builder.bases.image import BaseImage
from builder.debian import maintscripts
from builder.debian.base_owners import base_owners
from builder.debian.rootless import rootless
from builder.debian.install import (base_view, entries_hash, fetch_packages, install, install_and_configure,
                                    keyring_for, layer_items, resolve_online, sources_json)
from builder.layers.unpack import unpacked
from builder.debian.layer import Tree
from builder.debian.repo import AptSource
from builder.debian.resolve import Request, installed_from_status
from builder.oci.config import ContainerConfig
from builder.common.errors import InputError
from builder.project.lock import LockSection, section_for
from builder.project.manifest import RuleSpec
from builder.actions.steps import ActionResult, BuildContext, LayerStep, Lower

FORMAT = 1


def manifest_sources(ctx: BuildContext) -> list[AptSource] | None:
    apt = getattr(ctx.manifest, "apt", None)
    if apt is None or not apt.sources:
        return None
    return [AptSource(s.uri.rstrip("/"), suite, tuple(s.components)) for s in apt.sources for suite in s.suites]


def manifest_keyring(ctx: BuildContext) -> tuple[bytes, str] | None:
    apt = getattr(ctx.manifest, "apt", None)
    if apt is None or not apt.keyring:
        return None
    path = (ctx.project / apt.keyring).resolve()
    if not path.is_file():
        raise InputError(f"apt.keyring {apt.keyring!r}: no such file ({path})", path=ctx.manifest_path)
    return path.read_bytes(), str(path)


def packages_layer(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower, path: Path,
                   listed: list[Listed]) -> ActionResult:
    """The layer of a packages.txt that names packages (system_packages_action checked), installed over
    the base and the layers of the rules below this one."""
    requests = [Request(item.name, item.version, item.line) for item in listed]
    arch = ctx.platform.architecture
    explicit = manifest_sources(ctx)
    image = lower.image()
    shape = {"format": FORMAT, "requests": [[r.name, r.version] for r in requests], "base": ctx.base.digest,
             "arch": arch, "sources": sources_json(explicit) if explicit is not None else "base"}
    if lower.layers:  # packages a rule below installed: what dpkg's status says is part of the resolution
        shape["below"] = entries_hash([base_view(ctx.store, image.layers, with_links=False).status])
    inputs = entries_hash([shape])
    section = ctx.state.lock.reusable(section_for(rule.name), inputs, rule.file)
    if section is None:
        ctx.resolving(rule.file)
        section = _resolve(ctx, image, requests, explicit, arch, path, inputs)
    ctx.state.lock.record(section_for(rule.name), section)
    if not section.entries:
        return ActionResult([], config)
    locked = entries_hash(section.entries)
    why_not = maintscripts.unusable()
    scripts = "emulated" if why_not else "sandbox"  # part of the key: the two give different layers
    notes_key = entries_hash([locked, scripts])
    notes = ctx.store.get_record("deb-notes", notes_key)
    if notes:
        ctx.state.notes.extend(notes["notes"])
    entry = ctx.tree.entries.get(rule.file)
    step = LayerStep(
        rule=rule.name,
        step=rule.name,
        config={"rule": rule.name, "version": rule.version, "format": FORMAT, "packages": locked, "arch": arch,
                "scripts": scripts},
        entries=[entry] if entry is not None else [],
        input_hash=locked,
        make_items=list,
        created_by=f"airbuild {rule.name}: {len(section.entries)} Debian packages from {rule.file}",
    )
    held: list = []  # the scratch directory (a WorkDir: locked, so no other process's sweep takes it)

    def make_items():
        release()
        held.append(ctx.store.work_dir("debian"))
        return _make_items(ctx, image, section.entries, arch, notes_key, notes is None, why_not, held[-1].path)

    def release():
        while held:
            held.pop().release()

    step.make_items = make_items
    step.cleanup = release
    ctx.state.cleanups.append(step.cleanup)
    return ActionResult([step], config)


def _resolve(ctx: BuildContext, image: BaseImage, requests: list[Request], explicit: list[AptSource] | None,
             arch: str, path: Path, inputs: str) -> LockSection:
    view = base_view(ctx.store, image.layers, with_links=False)
    sources = explicit if explicit is not None else view.sources()
    if not sources:
        raise InputError("lists Debian packages, but the base image has no apt sources "
                         "(/etc/apt/sources.list or sources.list.d/*.sources): add `apt: sources:` to astro.yaml",
                         path=path)
    override = manifest_keyring(ctx)
    installed = installed_from_status(view.status)
    if not installed:
        raise InputError("lists Debian packages, but the base image has no dpkg status "
                         "(/var/lib/dpkg/status): it is not a Debian-based image", path=path)
    resolved = resolve_online(ctx.store, sources, arch, requests, installed,
                              lambda s: keyring_for(s, view, override), str(path))
    ctx.state.notes.extend(resolved.notes)
    return LockSection(inputs, tuple(resolved.entries))


def _make_items(ctx: BuildContext, image: BaseImage, entries, arch: str, notes_key: str, remember_notes: bool,
                why_not: str | None, scratch: Path):
    view = base_view(ctx.store, image.layers)
    packages = fetch_packages(ctx.store, entries, scratch / "bodies")
    tree = Tree(dict(view.links))
    if why_not is None:
        owners = base_owners(ctx.store, image.layers) if rootless() else None
        items, notes = install_and_configure(tree, packages, view, unpacked(ctx.store, image.layers), scratch,
                                             ctx.epoch, image.env, owners)
    else:
        notes = install(tree, packages, view, arch, f"maintainer scripts need a sandbox ({why_not})")
        items = layer_items(tree)
    ctx.store.put_record("deb-notes", notes_key, {"notes": notes})
    if remember_notes:
        ctx.state.notes.extend(notes)
    return items

