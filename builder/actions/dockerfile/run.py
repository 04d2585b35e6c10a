"""Layer steps of the `dockerfile` action that BuildKit builds (builder.engine_segment.py): RUN, and COPY
with the `buildkit` backend.

A RUN layer's key covers the instruction's text, the values of the ARGs in scope, the
ENV, USER, WORKDIR and SHELL in effect, the project files the segment's RUNs use (their
Merkle root, as the step's inputs), the normaliser's version and, through the chain, the
key of every layer below (COPY sources included). An engine COPY's key covers the same
settings and the files it copies. Unchanged, nothing calls Docker.
"""

from __future__ import annotations

from builder.layers import normalise as layer_normalise
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Instruction
from builder.project.manifest import RuleSpec
from builder.actions.dockerfile.copy_sources import copy_sources
from builder.actions.dockerfile.run_paths import used_entries
from builder.actions.dockerfile.segment import EngineSegment
from builder.actions.steps import BuildContext, LayerStep
from builder.project.tree import merkle_root


def engine_step(segment: EngineSegment, rule: RuleSpec, ctx: BuildContext, config: ContainerConfig,
                args: dict[str, str], inst: Instruction, variables: dict[str, str]) -> LayerStep:
    step = LayerStep(
        rule=rule.name,
        step=f"{rule.name}:{inst.label}",
        config={"rule": rule.name, "version": rule.version, "instruction": inst.original,
                "args": sorted(args.items()), "env": [list(pair) for pair in config.env], "user": config.user,
                "workdir": config.workdir, "shell": dict(config.extra).get("Shell"),
                "normalise": layer_normalise.VERSION},
        entries=[],        # a RUN's: set by segment.finish(), the files any RUN of the segment uses
        input_hash="",
        make_items=list,   # set by segment.add_step()
        created_by=inst.original,
    )
    if inst.keyword == "COPY":
        sources, dest, _, entries = copy_sources(ctx, config, inst, variables)
        step.config.update(sources=sources, dest=dest, engine="buildkit")
        step.entries, step.input_hash = entries, merkle_root(entries, "")
        segment.add_step(step, context=entries)
    else:
        segment.add_step(step, used=used_entries(inst, ctx.tree, config.workdir or "/", ctx.manifest.workdir))
    return step
