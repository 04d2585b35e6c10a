"""A base image's ONBUILD triggers: the Astro runtime's are replaced by rules, every other one runs.

Docker runs a base's triggers right after FROM, in order. The Astro runtime's are: copy
packages.txt and install it (`install-system-packages`, or ap-airflow's `apt-get` line), copy
requirements.txt and install it (`install-python-dependencies`, or `pip install -r`), copy the
project (`COPY --chown=astro:0 . .`), with USER switches around them. airbuild's rules do those
copies and installs as content-addressed layers (system-packages, python-requirements, the files
rules), so those triggers are replaced, never run. Every other trigger is an instruction run at
its place, first in the `dockerfile` rule: config instructions (USER, ENV, LABEL, WORKDIR...),
Astro's USER switches among them, are applied natively, COPY natively, RUN through BuildKit
(with `backend: native` a RUN trigger is an error naming it). An image airbuild writes carries
no triggers. The build output lists each trigger and what became of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.project.dockerfile import Instruction, parse_trigger
from builder.common.errors import InputError
from builder.project.manifest import RuleSpec

_REQUIREMENTS = re.compile(r"(?<![\w.-])requirements\.txt(?![\w.-])")
_PACKAGES = re.compile(r"(?<![\w.-])packages\.txt(?![\w.-])")


@dataclass(frozen=True)
class Trigger:
    index: int                      # 1-based, in the base config's OnBuild list
    instruction: Instruction
    replaced_by: tuple[str, ...]    # the rules doing its work; () when it runs

    @property
    def text(self) -> str:
        return self.instruction.original


def base_triggers(base_config: dict, rules: list[RuleSpec], from_line: int | None) -> list[Trigger]:
    """The base's triggers, each with the rules that replace it (Astro's set, when those rules are in the build)."""
    texts = (base_config.get("config") or {}).get("OnBuild") or []
    out = []
    for index, text in enumerate(texts, start=1):
        instruction = parse_trigger(text, index, from_line)
        action = astro_action(instruction)
        out.append(Trigger(index, instruction, tuple(r.name for r in rules if r.action == action) if action else ()))
    if any(not t.replaced_by for t in out) and not any(r.action == "dockerfile" for r in rules):
        shown = ", ".join(f"`{t.text}`" for t in out if not t.replaced_by)
        raise InputError(f"the base image's ONBUILD triggers {shown} run in the `dockerfile` rule, which this "
                         "build's rules (astro.yaml `layers`) leave out: add it")
    return out


def astro_action(inst: Instruction) -> str | None:
    """The rule action doing the work of one of the Astro runtime's install triggers, or None."""
    if inst.keyword == "COPY" and all(f.startswith("--chown=") for f in inst.flags) and len(inst.args) == 2 \
            and inst.args[1] in (".", "./"):
        return {"packages.txt": "system-packages", "requirements.txt": "python-requirements",
                ".": "files"}.get(inst.args[0])
    if inst.keyword == "RUN":
        command = " ".join(inst.args)
        if "install-system-packages" in command or (_PACKAGES.search(command) and "apt-get" in command):
            return "system-packages"
        if "install-python-dependencies" in command or (_REQUIREMENTS.search(command) and "pip" in command):
            return "python-requirements"
    return None


def report(trigger: Trigger, step: str | None = None, engine: bool = False) -> dict:
    """The --json entry for one trigger: replaced (by which rules), or ran (`step`: the layer it made, if any)."""
    if trigger.replaced_by:
        return {"index": trigger.index, "trigger": trigger.text, "handled": "replaced",
                "rules": list(trigger.replaced_by)}
    how = "BuildKit" if engine else "native" if step else "config"
    return {"index": trigger.index, "trigger": trigger.text, "handled": "ran", "how": how, "step": step}


def note(entry: dict) -> str:
    """The table's note line for a report entry."""
    head = f"base image ONBUILD {entry['index']} `{entry['trigger']}`"
    if entry["handled"] == "replaced":
        return f"{head}: replaced by rule {', '.join(entry['rules'])}"
    if entry["how"] == "config":
        return f"{head}: applied to the image config"
    return f"{head}: ran as layer {entry['step']} ({'BuildKit' if entry['how'] == 'BuildKit' else 'natively'})"
