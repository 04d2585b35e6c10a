"""RUN instructions of the `dockerfile` action: layer steps that BuildKit builds (builder/run_segment.py).

A RUN layer's key covers the instruction's text, the values of the ARGs in scope, the
ENV, USER, WORKDIR and SHELL in effect, the project files the segment's RUNs use (their
Merkle root, as the step's inputs), the normaliser's version and, through the chain, the
key of every layer below (COPY sources included). Unchanged, nothing calls Docker.
"""

from __future__ import annotations

from builder import layer_normalise
from builder.container_config import ContainerConfig
from builder.dockerfile_parse import Instruction
from builder.manifest import RuleSpec
from builder.run_paths import used_entries
from builder.run_segment import RunSegment
from builder.steps import BuildContext, LayerStep


def run_step(segment: RunSegment, rule: RuleSpec, ctx: BuildContext, config: ContainerConfig,
             args: dict[str, str], inst: Instruction) -> LayerStep:
    used = used_entries(inst, ctx.tree, config.workdir or "/", ctx.manifest.workdir)
    step = LayerStep(
        rule=rule.name,
        step=f"{rule.name}:RUN@{inst.line}",
        config={"rule": rule.name, "version": rule.version, "instruction": inst.original,
                "args": sorted(args.items()), "env": [list(pair) for pair in config.env], "user": config.user,
                "workdir": config.workdir, "shell": dict(config.extra).get("Shell"),
                "normalise": layer_normalise.VERSION},
        entries=[],        # set by segment.finish(): the files any RUN of the segment uses
        input_hash="",
        make_items=list,   # set by segment.add_step()
        created_by=inst.original,
    )
    segment.add_step(step, used)
    return step
