"""The rule engine: rules -> steps -> layers keyed by content, chained to their parents.

key = sha256(rule config incl. name and version, input Merkle root, parent key, platform,
layer mtime). A key found in the store is reused without reading or writing layer bytes. The parts of a
rule that splits its files into several layers (`split`) are siblings: each is keyed on the layer below
the rule, so an edit in one part leaves the others' keys alone; a layer above is keyed on them all.

Each rule's action sees the filesystem below it (`Lower`): the base and the layers planned
under the rule. A build materialises those layers when an action reads them; a read-only plan
(`airbuild plan`) does not, and a rule whose key needs bytes the store lacks, or a resolution
the lock does not pin, is planned with no key and the reason (`NotLocal`), as is every layer
above it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from builder.actions.dockerfile.action import dockerfile_action
from builder.actions.files import files_action
from builder.actions.debian.action import system_packages_action
from builder.actions.python.action import python_action
from builder.oci.config import ContainerConfig
from builder.project.manifest import RuleSpec
from builder.engine.state import PreviousBuild, StepState
from builder.actions.steps import ActionResult, BuildContext, ConfigStep, LayerStep, Lower
from builder.common.errors import NotLocal
from builder.store.store import LayerRecord
from builder.common.hashing import json_sha256

KEY_FORMAT = 1

ACTIONS: dict[str, Callable[[RuleSpec, BuildContext, ContainerConfig, Lower], ActionResult]] = {
    "files": files_action,
    "dockerfile": dockerfile_action,
    "system-packages": system_packages_action,
    "python-requirements": python_action,
}


@dataclass
class PlannedLayer:
    step: LayerStep
    key: str | None              # None: a read-only plan could not know it (`reason` says why)
    parent_key: str | None
    record: LayerRecord | None   # from the store, or once built
    reason: str
    cached: bool = False         # the store had it when planned (or the shared cache, once fetched)
    files_read: int = 0
    source: str | None = None    # local | remote (the shared cache) | built, once known

    def state(self) -> StepState:
        return StepState(key=self.key, parent_key=self.parent_key, config_hash=self.step.config_hash,
                         leaves={e.relpath: e.identity for e in self.step.entries})


@dataclass
class Plan:
    layers: list[PlannedLayer]
    history: list[dict]          # our history entries, in order, layers and config steps alike
    config: ContainerConfig
    base_key: str
    config_steps: list[ConfigStep] = field(default_factory=list)


def layer_key(step: LayerStep, parent_key: str, ctx: BuildContext) -> str:
    material = {"format": KEY_FORMAT, "config": step.config, "inputs": step.input_hash, "parent": parent_key,
                "platform": str(ctx.platform), "mtime": ctx.epoch}
    return json_sha256(material)


def make_plan(ctx: BuildContext, rules: list[RuleSpec], initial: ContainerConfig, previous: PreviousBuild,
              hashed_paths: set[str], materialise: Callable[[PlannedLayer], LayerRecord] | None) -> Plan:
    """`materialise` builds a planned layer an action above it reads; None for a read-only plan."""
    parent_key: str | None = hashlib.sha256(f"base|{ctx.base.digest}|{ctx.platform}".encode()).hexdigest()
    base_key = parent_key
    config = initial
    layers: list[PlannedLayer] = []
    history: list[dict] = []
    unknown_below: str | None = None  # the first rule whose key could not be known, in a read-only plan
    for rule in rules:
        try:
            result = ACTIONS[rule.action](rule, ctx, config, Lower(ctx.base, tuple(layers), materialise))
        except NotLocal as exc:
            if not ctx.read_only:
                raise
            layers.append(PlannedLayer(_unplanned(rule), None, None, None, f"key not known: {exc.message}"))
            parent_key, unknown_below = None, unknown_below or rule.name
            continue
        config = result.config
        below_rule, sibling_keys = parent_key, []
        for step in result.steps:
            if isinstance(step, ConfigStep):
                history.append({"created_by": step.created_by, "empty_layer": True})
                continue
            step.below = tuple(layers)
            if parent_key is None:
                layers.append(PlannedLayer(step, None, None, None,
                                           f"key not known: the `{unknown_below}` layer below it has none"))
                continue
            if result.siblings:  # each part of a split rule keyed on what is below the rule, not on each other
                parent_key = below_rule
            key = layer_key(step, parent_key, ctx)
            sibling_keys.append(key)
            stored = ctx.store.get_layer(key)
            record = ctx.store.get_compressed(stored.diff_id, ctx.codec.cache_id) if stored else None
            planned = PlannedLayer(step, key, parent_key, record, "", cached=record is not None,
                                   source="local" if record is not None else None)
            planned.reason = "unchanged" if record else explain(planned, previous.steps.get(step.step), stored)
            planned.files_read = sum(1 for e in step.entries if e.relpath in hashed_paths)
            layers.append(planned)
            history.append({"created_by": step.created_by})
            parent_key = key
        if result.siblings and len(sibling_keys) > 1 and parent_key is not None:
            parent_key = json_sha256({"siblings": sibling_keys})  # what a layer above the parts is keyed on
    return Plan(layers=layers, history=history, config=config, base_key=base_key)


def _unplanned(rule: RuleSpec) -> LayerStep:
    """Where a read-only plan shows a rule it could not plan: no inputs, nothing to build from."""
    def refuse():
        raise NotLocal(f"the `{rule.name}` rule was not planned")

    return LayerStep(rule=rule.name, step=rule.name, config={}, entries=[], input_hash="", make_items=refuse,
                     created_by=f"airbuild {rule.name}")


def explain(layer: PlannedLayer, before: StepState | None, stored: LayerRecord | None) -> str:
    """Why a layer must be built, in words a user can act on."""
    if before is None:
        return "new layer (no earlier build of this project)"
    if before.key == layer.key:
        return "not in the store" if stored is None else "not in the store for this compression codec"
    now = {e.relpath: e.identity for e in layer.step.entries}
    changed = sorted(p for p in now if p in before.leaves and before.leaves[p] != now[p])
    added = sorted(p for p in now if p not in before.leaves)
    removed = sorted(p for p in before.leaves if p not in now)
    parts = [f"{verb}: {_first(paths)}" for verb, paths in (("changed", changed), ("added", added),
                                                           ("removed", removed)) if paths]
    if parts:
        return "; ".join(parts)
    if before.config_hash != layer.step.config_hash:
        return "rule configuration changed"
    if before.parent_key != layer.parent_key:
        return "a layer below it changed"
    return "build settings changed (platform or SOURCE_DATE_EPOCH)"


def _first(paths: list[str], shown: int = 3) -> str:
    more = f" (+{len(paths) - shown} more)" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


