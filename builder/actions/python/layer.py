"""The python-requirements layer: resolved by uv for the image's Python, installed as pip installs.

Loaded only for a requirements file that lists something (builder.actions.python.action).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from builder.actions.python.install import InstallSet, fetch, install, remove, staged_items
from builder.actions.python.install_order import Distribution
from builder.actions.python.resolve import Indexes, PinnedWheel, requirement_lines, resolve, strip_credentials
from builder.actions.python.target import (detect_python, installed_distributions, installed_metadata,
                                           marker_environment)
from builder.actions.steps import ActionResult, BuildContext, LayerStep
from builder.common.hashing import json_sha256
from builder.oci.config import ContainerConfig
from builder.project.lock import LockSection, section_for
from builder.project.manifest import RuleSpec

INSTALL_FORMAT = 2  # 2: pip's order, later wheels win shared files, REQUESTED (1: by name, shared files refused)


def requirements_layer(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, path: Path,
                       text: str) -> ActionResult:
    """The layer of a requirements file that lists something (python_action checked)."""
    target = detect_python(ctx.base, ctx.store, ctx.platform)
    base_dists = installed_distributions(ctx.base, ctx.store, target)
    indexes = Indexes(ctx.manifest.index_url, tuple(ctx.manifest.extra_index_urls))
    inputs = _hash({"requirements": text, "base": ctx.base.digest, "python": target.describe(),
                    "site": target.site_packages, "platform": target.uv_platform,
                    "indexes": [strip_credentials(u) for u in filter(None, [indexes.index_url,
                                                                            *indexes.extra_index_urls])]})
    section = ctx.state.lock.reusable(section_for(rule.name), inputs, rule.file)
    if section is None:
        pinned = ctx.state.lock.pinned.sections.get(section_for(rule.name)) if ctx.state.lock.pinned else None
        previous = tuple(PinnedWheel.from_json(e) for e in pinned.entries) if pinned else ()
        pins = resolve(path, target, base_dists, indexes, ctx.state.lock.upgrade, previous)
        section = LockSection(inputs, tuple(p.to_json() for p in sorted(pins, key=lambda p: p.name.lower())))
    ctx.state.lock.record(section_for(rule.name), section)
    pins = [PinnedWheel.from_json(e) for e in section.entries]
    if not pins:  # the base has everything already
        return ActionResult([], config)

    staging = ctx.store.root / "tmp" / f"{os.getpid()}.python-staging"
    index_hosts = {h for h in (_host(u) for u in filter(None, [indexes.index_url, *indexes.extra_index_urls])) if h}
    # pip's roots: they shape its install order (which wheel's copy of a shared file wins) and get REQUESTED.
    roots = tuple(str(requirement) for _, _, requirement in requirement_lines(path))

    def make_items():
        remove(staging)
        wheels = [(pin, fetch(ctx.store, pin, index_hosts)) for pin in pins]
        install(ctx.store, wheels, target, staging, _install_set(ctx, target, roots))
        return staged_items(staging)

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
        cleanup=lambda: remove(staging),
    )
    return ActionResult([step], config)


def _install_set(ctx: BuildContext, target, roots: tuple[str, ...]):
    """What pip would see besides the wheels: the roots, the base's distributions, the image's marker variables."""
    base = tuple(Distribution.from_metadata(text, installed=True, requires_txt=requires)
                 for text, requires in installed_metadata(ctx.base, ctx.store, target))
    return InstallSet(roots, base, marker_environment(ctx.base, ctx.store, target))


def _hash(value) -> str:
    return json_sha256(value)


def _host(url: str) -> str | None:
    return urlsplit(url).hostname
