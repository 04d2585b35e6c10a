"""The python-requirements layer: resolved by uv for the image's Python, installed as pip installs.

Loaded only for a requirements file that lists something (builder.actions.python.action).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from builder.actions.python.install import InstallSet, fetch, install, staged_items
from builder.actions.python.install_order import Distribution
from builder.actions.python.resolve import Indexes, PinnedWheel, requirement_lines, resolve, strip_credentials
from builder.actions.python.target import (detect_python, installed_distributions, installed_metadata,
                                           marker_environment)
from builder.actions.steps import ActionResult, BuildContext, LayerStep, Lower
from builder.common.hashing import json_sha256
from builder.oci.config import ContainerConfig
from builder.project.lock import LockSection, section_for
from builder.project.manifest import RuleSpec

INSTALL_FORMAT = 2  # 2: pip's order, later wheels win shared files, REQUESTED (1: by name, shared files refused)


def requirements_layer(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower, path: Path,
                       text: str) -> ActionResult:
    """The layer of a requirements file that lists something (python_action checked), for the Python of
    the base and the layers of the rules below this one (a Debian rule's python3, its python3-* packages)."""
    image = lower.image()
    target = detect_python(image, ctx.store, ctx.platform)
    installed = installed_distributions(image, ctx.store, target)
    indexes = Indexes(ctx.manifest.index_url, tuple(ctx.manifest.extra_index_urls))
    shape = {"requirements": text, "base": ctx.base.digest, "python": target.describe(),
             "site": target.site_packages, "platform": target.uv_platform,
             "indexes": [strip_credentials(u) for u in filter(None, [indexes.index_url, *indexes.extra_index_urls])]}
    below = _added_below(lower, ctx, target, installed)
    if below:  # distributions a rule below installed are constraints of the resolution like the base's
        shape["below"] = below
    inputs = _hash(shape)
    section = ctx.state.lock.reusable(section_for(rule.name), inputs, rule.file)
    if section is None:
        ctx.resolving(rule.file)
        pinned = ctx.state.lock.pinned.sections.get(section_for(rule.name)) if ctx.state.lock.pinned else None
        previous = tuple(PinnedWheel.from_json(e) for e in pinned.entries) if pinned else ()
        pins = resolve(path, target, installed, indexes, ctx.state.lock.upgrade, previous)
        section = LockSection(inputs, tuple(p.to_json() for p in sorted(pins, key=lambda p: p.name.lower())))
    ctx.state.lock.record(section_for(rule.name), section)
    pins = [PinnedWheel.from_json(e) for e in section.entries]
    if not pins:  # the base has everything already
        return ActionResult([], config)

    held: list = []  # the staging directory (a WorkDir), made when the layer is built
    index_hosts = {h for h in (_host(u) for u in filter(None, [indexes.index_url, *indexes.extra_index_urls])) if h}
    # pip's roots: they shape its install order (which wheel's copy of a shared file wins) and get REQUESTED.
    roots = tuple(str(requirement) for _, _, requirement in requirement_lines(path))

    def make_items():
        release()
        held.append(ctx.store.work_dir("python-staging"))
        staging = held[-1].path
        wheels = [(pin, fetch(ctx.store, pin, index_hosts)) for pin in pins]
        install(ctx.store, wheels, target, staging, _install_set(ctx, image, target, roots))
        return staged_items(staging)

    def release():
        while held:
            held.pop().release()

    step = LayerStep(
        rule=rule.name,
        step=rule.name,
        config={"rule": rule.name, "version": rule.version, "python": target.describe(),
                "interpreter": target.interpreter, "site": target.site_packages, "scripts": target.scripts_dir,
                "platform": target.uv_platform, "base": ctx.base.digest, "install": INSTALL_FORMAT, "roots": roots},
        entries=[e for e in (ctx.tree.entries.get(rule.file),) if e is not None],
        input_hash=_hash(list(section.entries)),
        make_items=make_items,
        created_by=f"airbuild {rule.name}: {len(pins)} distributions for {target.describe()}",
        cleanup=release,
    )
    return ActionResult([step], config)


def _added_below(lower: Lower, ctx: BuildContext, target, installed: dict[str, str]) -> dict[str, str]:
    """Name -> version of the distributions the layers below added to (or changed in) the base's."""
    if not lower.layers:
        return {}
    base = installed_distributions(ctx.base, ctx.store, target) if ctx.base.layers else {}
    return {name: version for name, version in sorted(installed.items()) if base.get(name) != version}


def _install_set(ctx: BuildContext, image, target, roots: tuple[str, ...]):
    """What pip would see besides the wheels: the roots, the installed distributions, the image's marker variables."""
    present = tuple(Distribution.from_metadata(text, installed=True, requires_txt=requires)
                    for text, requires in installed_metadata(image, ctx.store, target))
    return InstallSet(roots, present, marker_environment(image, ctx.store, target))


def _hash(value) -> str:
    return json_sha256(value)


def _host(url: str) -> str | None:
    return urlsplit(url).hostname
