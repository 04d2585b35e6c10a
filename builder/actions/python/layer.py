"""The python-requirements layer: resolved by uv for the image's Python, installed as pip installs.

Loaded only for a requirements file that lists something (builder.actions.python.action).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

from builder.actions.python.buckets import BUCKETS, Bucket, bucket_of, buckets
from builder.actions.python.install import InstallSet, fetch_all, install, pip_order, requested_names, staged_items
from builder.actions.python.sdist import BuildSite, local_wheel
from builder.actions.python.install_order import Distribution
from builder.actions.python.resolve import (Indexes, PinnedWheel, added_lines, line_digest, logical_lines,
                                            requirement_lines, resolve, strip_credentials)
from builder.actions.python.target import (detect_python, installed_distributions, installed_metadata,
                                           marker_environment, normalise)
from builder.actions.python.wheel_files import wheel_files
from builder.actions.steps import ActionResult, BuildContext, LayerStep, Lower
from builder.common import phases
from builder.common.errors import NotLocal
from builder.common.hashing import json_sha256
from builder.oci.config import ContainerConfig
from builder.project.lock import LockSection, section_for
from builder.project.manifest import RuleSpec

INSTALL_FORMAT = 3  # 3: split into buckets; 2: pip's order, later wheels win shared files, REQUESTED (1: by name)
BUCKETS_KIND = "python-buckets"
LINES_KIND = "python-lines"  # by a lock section's inputs: its requirements file's lines (digests), for `_added_since`


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
    lines = logical_lines(text)
    section = ctx.state.lock.reusable(section_for(rule.name), inputs, rule.file)
    if section is None:
        ctx.resolving(rule.file)
        pinned = ctx.state.lock.pinned.sections.get(section_for(rule.name)) if ctx.state.lock.pinned else None
        previous = tuple(PinnedWheel.from_json(e) for e in pinned.entries) if pinned else ()
        added = _added_since(ctx, pinned.inputs, shape, lines) if pinned else None
        with phases.timed("resolve"):
            pins = resolve(path, target, installed, indexes, ctx.state.lock.upgrade, previous, added)
        section = LockSection(inputs, tuple(p.to_json() for p in sorted(pins, key=lambda p: p.name.lower())))
    ctx.state.lock.record(section_for(rule.name), section)
    _remember_lines(ctx, inputs, shape, lines)
    pins = [PinnedWheel.from_json(e) for e in section.entries]
    if not pins:  # the base has everything already
        return ActionResult([], config)

    index_hosts = {h for h in (_host(u) for u in filter(None, [indexes.index_url, *indexes.extra_index_urls])) if h}
    # pip's roots: they shape its install order (which wheel's copy of a shared file wins) and get REQUESTED.
    roots = tuple(str(requirement) for _, _, requirement in requirement_lines(path))
    requested = requested_names(roots)
    by_name = {normalise(pin.name): pin for pin in pins}
    site = BuildSite(ctx.store, target, image, indexes, frozenset(index_hosts), ctx.read_only, ctx.state.notes)
    groups = _buckets(ctx, image, site, section, pins, roots, index_hosts)
    common = {"rule": rule.name, "version": rule.version, "python": target.describe(), "interpreter": target.interpreter,
              "site": target.site_packages, "scripts": target.scripts_dir, "platform": target.uv_platform,
              "base": ctx.base.digest, "install": INSTALL_FORMAT, "buckets": BUCKETS}
    entries = [e for e in (ctx.tree.entries.get(rule.file),) if e is not None]
    steps = [_bucket_step(rule, ctx, site, common, entries, bucket, [by_name[n] for n in bucket.names], requested,
                          len(pins)) for bucket in groups]
    return ActionResult(steps, config, siblings=True)  # each bucket keyed on the layer below the rule


def _bucket_step(rule: RuleSpec, ctx: BuildContext, site: BuildSite, common: dict, entries, bucket: Bucket,
                 pins: list[PinnedWheel], requested: set[str], total: int) -> LayerStep:
    target = site.target
    held: list = []  # the staging directory (a WorkDir, locked while held), made when the layer is built

    def make_items():
        release()
        held.append(ctx.store.work_dir(f"python-staging-{bucket.index:02d}"))
        staging = held[-1].path
        with phases.timed("fetch"):
            fetched = fetch_all(ctx.store, pins, set(site.index_hosts))
        with phases.timed("install"):
            install([(pin, *local_wheel(site, pin, path)) for pin, path in zip(pins, fetched)],
                    target, staging, requested)
            return staged_items(staging, drop=bucket.drop)

    def release():
        while held:
            held.pop().release()

    return LayerStep(
        rule=rule.name,
        step=f"{rule.name}/{bucket.index:02d}",
        config={**common, "bucket": bucket.index, "requested": sorted(set(bucket.names) & requested),
                "shared": [list(s) for s in bucket.shared]},
        entries=entries,
        input_hash=_hash(sorted((p.to_json() for p in pins), key=lambda e: e["name"].lower())),
        make_items=make_items,
        created_by=f"airbuild {rule.name}: {len(pins)} of {total} distributions for {target.describe()} "
                   f"(bucket {bucket.index} of {BUCKETS})",
        cleanup=release,
    )


def _buckets(ctx: BuildContext, image, site: BuildSite, section: LockSection, pins: list[PinnedWheel],
             roots: tuple[str, ...], index_hosts: set[str]) -> list[Bucket]:
    """The pins spread over buckets, with the shared files' winners: a record per lock (in the store, else in the
    team's shared cache, so a runner whose layers all come from there fetches no wheel), else read from the wheels
    (fetched when the store lacks them: which files they ship decides what each bucket keeps)."""
    target = site.target
    record = _hash({"format": INSTALL_FORMAT, "buckets": BUCKETS, "inputs": section.inputs,
                    "entries": list(section.entries), "roots": list(roots), "site": target.site_packages,
                    "scripts": target.scripts_dir, "include": target.include, "prefix": target.prefix})
    known = _known_buckets(ctx.store.get_record(BUCKETS_KIND, record), pins)
    if known is not None:
        return known
    if ctx.shared is not None:
        value = ctx.shared.get_record(BUCKETS_KIND, record)
        known = _known_buckets(value, pins)
        if known is not None:
            (ctx.store.root / BUCKETS_KIND).mkdir(exist_ok=True)
            ctx.store.put_record(BUCKETS_KIND, record, value)
            return known
    if ctx.read_only and not all(ctx.store.has_blob("sha256:" + pin.sha256) for pin in pins):
        raise NotLocal("splitting the requirements into layers reads their wheels, and the store lacks some")
    with phases.timed("fetch"):
        fetched = fetch_all(ctx.store, pins, index_hosts)
    started = time.perf_counter()
    files = {}
    for pin, path in zip(pins, fetched):
        filename, wheel = local_wheel(site, pin, path)
        # store blobs are named by their hex digest
        files[normalise(pin.name)] = wheel_files(ctx.store, "sha256:" + wheel.name, wheel, filename, pin.name, target)
    order = pip_order(roots, {name: found.dist for name, found in files.items()}, _install_set(ctx, image, target, roots))
    groups = buckets(order, files)
    phases.add("split", time.perf_counter() - started)
    value = {"buckets": [b.to_json() for b in groups]}
    (ctx.store.root / BUCKETS_KIND).mkdir(exist_ok=True)
    ctx.store.put_record(BUCKETS_KIND, record, value)
    if ctx.shared is not None:
        ctx.shared.offer(BUCKETS_KIND, record, value)
    return groups


def _known_buckets(value: dict | None, pins: list[PinnedWheel]) -> list[Bucket] | None:
    """A bucket record's buckets, if it is one and places exactly these pins (else None: read the wheels)."""
    if not isinstance(value, dict):
        return None
    try:
        groups = [Bucket.from_json(b) for b in value["buckets"]]
        placed = sorted(name for group in groups for name in group.names if bucket_of(name) == group.index)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return groups if placed == sorted(normalise(pin.name) for pin in pins) else None


def _added_since(ctx: BuildContext, earlier: str, shape: dict, lines: list[str]) -> list[str] | None:
    """The requirement lines added since the lock's section was resolved (whose inputs are `earlier`), when
    nothing else changed: known when this store resolved or built that section (a record by its inputs)."""
    known = ctx.store.get_record(LINES_KIND, earlier)
    if not isinstance(known, dict) or known.get("rest") != _rest(shape) or not isinstance(known.get("lines"), list):
        return None
    return added_lines(known["lines"], lines)


def _remember_lines(ctx: BuildContext, inputs: str, shape: dict, lines: list[str]) -> None:
    """What `_added_since` compares a later requirements file with, once per section's inputs."""
    if ctx.read_only or ctx.store.get_record(LINES_KIND, inputs) is not None:
        return
    (ctx.store.root / LINES_KIND).mkdir(exist_ok=True)
    ctx.store.put_record(LINES_KIND, inputs, {"rest": _rest(shape), "lines": [line_digest(line) for line in lines]})


def _rest(shape: dict) -> str:
    """The resolution's inputs besides the requirements file itself."""
    return _hash({key: value for key, value in shape.items() if key != "requirements"})


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
