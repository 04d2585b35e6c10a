"""The `python-requirements` action: requirements.txt becomes one locked, reproducible layer.

Resolution (uv, for the image's Python and platform, the base's distributions as
constraints) happens only when requirements.txt, the base, the target or the indexes
changed since the lock was written; installation (download, unpack) only when the
layer's key is not in the store.
"""

from __future__ import annotations

from builder.actions.inputs import listed_lines
from builder.common.text import read_utf8
from builder.actions.steps import ActionResult, BuildContext, Lower
from builder.oci.config import ContainerConfig
from builder.project.manifest import RuleSpec


def python_action(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower) -> ActionResult:
    path = ctx.project / rule.file
    text = read_utf8(path) if path.is_file() else ""
    if not listed_lines(text):
        return ActionResult([], config)
    # uv, the wheel installer and the Python target's readers: only for a file that lists something.
    from builder.actions.python.layer import requirements_layer

    return requirements_layer(rule, ctx, config, lower, path, text)
