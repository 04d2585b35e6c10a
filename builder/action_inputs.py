"""`system-packages` and `python-requirements`: a package list becomes a layer.

Their installers land in later releases; until then an empty or comment-only list
adds no layer and a non-empty one is a clear error, never a silently dropped input.
"""

from __future__ import annotations

from builder.container_config import ContainerConfig
from builder.errors import InputError
from builder.manifest import RuleSpec
from builder.steps import ActionResult, BuildContext

WHAT = {"system-packages": "Debian packages", "python-requirements": "Python requirements"}


def listed_lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def package_list_action(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig) -> ActionResult:
    path = ctx.project / rule.file
    if not path.is_file():
        return ActionResult([], config)
    listed = listed_lines(path.read_text(encoding="utf-8", errors="replace"))
    if listed:
        raise InputError(
            f"lists {len(listed)} {WHAT[rule.action]} ({', '.join(listed[:3])}{', ...' if len(listed) > 3 else ''}), "
            f"and installing {WHAT[rule.action]} natively is not available yet. Remove them from {rule.file} "
            "or drop the rule from `layers` in astro.yaml.", path=path)
    return ActionResult([], config)
