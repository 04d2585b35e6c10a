"""The `system-packages` action: packages.txt, checked; its layer made by builder.actions.debian.layer."""

from __future__ import annotations

from builder.actions.debian.package_list import parse_package_list
from builder.actions.steps import ActionResult, BuildContext, Lower
from builder.oci.config import ContainerConfig
from builder.project.manifest import RuleSpec


def system_packages_action(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower) -> ActionResult:
    path = ctx.project / rule.file
    if not path.is_file():
        return ActionResult([], config)
    listed = parse_package_list(path.read_text(encoding="utf-8", errors="replace"), path)
    if not listed:
        return ActionResult([], config)
    # The Debian stack (indexes, resolution, .deb files; ~50 ms): only for a packages.txt that names packages.
    from builder.actions.debian.layer import packages_layer

    return packages_layer(rule, ctx, config, lower, path, listed)
