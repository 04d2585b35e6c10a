"""The `files` action: a subtree of the project copied to a destination in the image."""

from __future__ import annotations

import posixpath
import re

from builder.common.errors import InputError
from builder.oci.config import ContainerConfig
from builder.project.ignore import IgnoreRules
from builder.layers.tar import LayerItem, with_parents
from builder.project.manifest import RuleSpec
from builder.bases.accounts import Ownership
from builder.actions.split import part_count, part_step, split_entries
from builder.actions.steps import ActionResult, BuildContext, LayerStep, Lower
from builder.project.tree import Entry, merkle_root


def files_action(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower) -> ActionResult:
    source = posixpath.normpath(rule.source.strip("/")) if rule.source.strip("/") else "."
    dest = render(rule.dest, ctx.variables)
    if not dest.startswith("/"):
        raise_dest(rule, dest)
    exclude = IgnoreRules(rule.exclude) if rule.exclude else None
    entries = [e for e in ctx.tree.select(source, exclude) if e.relpath != source]
    if not entries:
        return ActionResult([], config)
    base = "" if source == "." else source
    owner = ctx.project_owner()
    config_ = {"rule": rule.name, "version": rule.version, "source": source, "dest": dest,
               "exclude": rule.exclude, "owner": [owner.uid, owner.gid], "workdir": ctx.manifest.workdir}
    created_by = f"airbuild {rule.name}: {source} -> {dest}"
    parts = part_count(entries, rule.split)
    if parts == 1:
        return ActionResult([_step(rule.name, rule.name, config_, entries, base, dest, owner, created_by, ctx)],
                            config)
    steps = [_step(rule.name, part_step(rule.name, n, parts), {**config_, "part": [n, parts]}, group, base, dest,
                   owner, f"{created_by} (part {n + 1} of {parts})", ctx)
             for n, group in enumerate(split_entries(entries, base, parts)) if group]
    return ActionResult(steps, config, siblings=True)


def _step(rule: str, step: str, config: dict, entries: list[Entry], base: str, dest: str, owner: Ownership,
          created_by: str, ctx: BuildContext) -> LayerStep:
    return LayerStep(
        rule=rule,
        step=step,
        config=config,
        entries=entries,
        input_hash=merkle_root(entries, base),
        make_items=lambda: complete_parents(layer_items(entries, base, dest, owner), owner, ctx.manifest.workdir),
        created_by=created_by,
        project_content=True,
    )


def raise_dest(rule: RuleSpec, dest: str) -> None:
    raise InputError(f"rule {rule.name!r}: dest must be an absolute path in the image, got {dest!r}")


def layer_items(entries: list[Entry], base: str, dest: str, owner: Ownership,
                *, mode_override: int | None = None) -> list[LayerItem]:
    """Map project entries under `base` to image paths under `dest`; multiply-linked files become hard links."""
    dest_root = dest.strip("/")
    first_path_of_inode: dict[tuple[int, int], str] = {}
    items = []
    for entry in entries:
        rel = entry.relpath[len(base) + 1:] if base else entry.relpath
        path = posixpath.join(dest_root, rel) if dest_root else rel
        if entry.kind == "dir":
            items.append(LayerItem(path, "dir", mode_override or 0o755, owner.uid, owner.gid))
        elif entry.kind == "symlink":
            items.append(LayerItem(path, "symlink", 0o777, owner.uid, owner.gid, link=entry.link_target))
        else:
            mode = mode_override if mode_override is not None else entry.mode
            first = first_path_of_inode.get(entry.inode) if entry.inode else None
            if first is not None:
                items.append(LayerItem(path, "hardlink", mode, owner.uid, owner.gid, link=first))
                continue
            if entry.inode:
                first_path_of_inode[entry.inode] = path
            items.append(LayerItem(path, "file", mode, owner.uid, owner.gid, entry.size,
                                   source=entry.abspath, digest=entry.digest))
    return items


def complete_parents(items: list[LayerItem], owner: Ownership, workdir: str) -> list[LayerItem]:
    """`items` with every parent directory, sorted.

    Added directories from `workdir` down belong to the owner; those above it stay
    root's, so a layer never hands /usr or /usr/local to the project's user.
    """
    given = {item.path for item in items}
    workdir_root = workdir.strip("/")

    def owned(item: LayerItem) -> LayerItem:
        if item.path in given or not workdir_root:
            return item
        if item.path == workdir_root or item.path.startswith(workdir_root + "/"):
            return LayerItem(item.path, "dir", 0o755, owner.uid, owner.gid)
        return item

    return [owned(i) for i in with_parents(items)]


_PLAIN_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(template: str, variables: dict[str, str]) -> str:
    """Jinja2 in rule fields such as `dest: "{{ workdir }}/dags"`."""
    if "{" not in template:
        return template
    plain = _PLAIN_VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)
    if "{" not in plain:  # only plain {{ name }} substitutions: no need to load Jinja2 (~20 ms)
        return plain
    import jinja2  # only for a template that is more than plain names: it costs ~20 ms to import

    try:
        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise InputError(f"rule template {template!r}: {exc}") from None
