"""Which project files a Dockerfile COPY takes, and where they go: shared by native and BuildKit COPY."""

from __future__ import annotations

import posixpath
import re

from builder.actions.steps import BuildContext
from builder.common.errors import InputError
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Instruction, expand
from builder.project.ignore import compile_pattern
from builder.project.tree import Entry

_GLOB = re.compile(r"[*?\[]")


def copy_sources(ctx: BuildContext, config: ContainerConfig, inst: Instruction, variables: dict[str, str]):
    """(sources, absolute destination, [(entries, the directory copied or None, target)], every entry taken)."""
    *sources, dest = [expand(a, variables) for a in inst.args]
    dest_abs = posixpath.join(config.workdir or "/", dest)
    into_dir = dest.endswith("/") or len(sources) > 1
    selections: list[tuple[list[Entry], str | None, str]] = []  # (entries, the dir copied or None, target)
    for source in sources:
        matches = _match(ctx, source)
        if not matches:
            raise InputError(f"COPY source {source!r} is not in the build context (missing, or excluded by "
                             ".dockerignore)")
        for entry in matches:
            if entry.kind == "dir":
                base = "" if entry.relpath == "." else entry.relpath
                inner = [e for e in ctx.tree.select(base or ".", None) if e.relpath != entry.relpath]
                selections.append((inner, base, dest_abs))
            else:
                single = not into_dir and len(matches) == 1
                target = dest_abs if single else posixpath.join(dest_abs, posixpath.basename(entry.relpath))
                selections.append(([entry], None, target))
    all_entries = sorted({e.relpath: e for entries, _, _ in selections for e in entries}.values(),
                         key=lambda e: e.relpath)
    return sources, dest_abs, selections, all_entries


def _match(ctx: BuildContext, source: str) -> list[Entry]:
    clean = posixpath.normpath(source.lstrip("/")) if source.strip("/") else "."
    if clean == ".":
        return [Entry(".", "dir", 0o755)]
    if _GLOB.search(clean):
        regex = compile_pattern(clean)
        return [e for path, e in sorted(ctx.tree.entries.items()) if regex.match(path)]
    entry = ctx.tree.entries.get(clean)
    return [entry] if entry else []
