"""The `dockerfile` action: the Dockerfile's instructions after FROM.

Config instructions change the image config natively; each COPY becomes a layer of project
files; consecutive RUNs (with the config instructions between them) become one segment that
BuildKit runs, a layer per RUN (builder/actions/dockerfile/run.py), unless the backend is `native`. With the
`buildkit` backend, COPY joins the segment too: BuildKit makes every layer of the Dockerfile.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import TYPE_CHECKING

from builder.bases import onbuild
from builder.actions.files import complete_parents, layer_items
from builder.actions.dockerfile.secrets import check_secrets
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Instruction, check_instruction, expand, pairs, parse_arg, unquote
from builder.common.errors import InputError
from builder.layers.tar import LayerItem
from builder.project.manifest import RuleSpec
from builder.bases.accounts import resolve_owner
from builder.actions.steps import ActionResult, BuildContext, ConfigStep, LayerStep, Lower, Step
from builder.actions.dockerfile.copy_sources import copy_sources
from builder.project.tree import merkle_root

if TYPE_CHECKING:
    from builder.actions.dockerfile.segment import EngineSegment

def dockerfile_action(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, lower: Lower) -> ActionResult:
    args: dict[str, str] = {}
    steps: list[Step] = []
    path = ctx.dockerfile.path
    segment: EngineSegment | None = None
    if ctx.secrets:
        check_secrets(ctx)
    # The base's ONBUILD triggers that no rule replaces run first, as Docker runs them right after FROM.
    triggers = [t for t in ctx.onbuild if not t.replaced_by]
    for inst in [t.instruction for t in triggers] + list(ctx.dockerfile.instructions):
        variables = {**args, **config.env_dict()}
        made: LayerStep | None = None
        try:
            check_instruction(inst, path, ctx.backend)
            if inst.keyword == "RUN" or (inst.keyword == "COPY" and ctx.backend == "buildkit"):
                # BuildKit's modules (python-on-whales): loaded only for a Dockerfile that needs the engine.
                from builder.actions.dockerfile import segment as engine_segment
                from builder.actions.dockerfile.run import engine_step

                if segment is None:
                    segment = engine_segment.EngineSegment(ctx, rule, config, dict(args))
                segment.add(inst)
                made = engine_step(segment, rule, ctx, config, args, inst, variables)
            elif inst.keyword == "COPY":
                segment = _finish(segment)
                made = _copy(rule, ctx, config, inst, variables, lower)
            else:
                config = _apply(inst, config, args, variables, ctx)
        except InputError as exc:
            raise _located(exc, inst, path) from None
        if inst.trigger:
            engine = made is not None and (inst.keyword == "RUN" or ctx.backend == "buildkit")
            ctx.state.onbuild_report.append(onbuild.report(next(t for t in triggers if t.index == inst.trigger),
                                                     made.step if made else None, engine=engine))
        if made is not None:
            steps.append(made)
            continue
        if segment is not None:
            segment.add(inst)
        if inst.keyword not in ("ARG", "MAINTAINER"):
            steps.append(ConfigStep(rule.name, inst.original))
    _finish(segment)
    return ActionResult(steps, config)


def _located(exc: InputError, inst: Instruction, path) -> InputError:
    """The error at the Dockerfile's line; for a trigger, naming it (at the FROM line that brought it in)."""
    if inst.trigger:
        return InputError(f"{inst.describe()} (run right after FROM): {exc.message}",
                          path=path if path.exists() else None, line=inst.line or None)
    return InputError(exc.message, path=path, line=inst.line)


def _finish(segment) -> None:
    if segment is not None:
        segment.finish()
    return None


def _apply(inst: Instruction, config: ContainerConfig, args: dict[str, str], variables: dict[str, str],
           ctx: BuildContext) -> ContainerConfig:
    keyword = inst.keyword
    if keyword == "ARG":  # a build arg wins; a bare ARG takes the global ARG's value, as Docker does
        inherited = dict(ctx.dockerfile.global_args)
        for name, default in parse_arg(inst):
            if name in ctx.build_args:
                args[name] = ctx.build_args[name]
            elif default is not None:
                args[name] = expand(default, variables)
            else:
                args.setdefault(name, inherited.get(name, ""))
    elif keyword == "SHELL":
        shell = ("Shell", list(inst.args))
        config = dataclasses.replace(config, extra=tuple(sorted([*(i for i in config.extra if i[0] != "Shell"),
                                                                 shell])))
    elif keyword == "ENV":
        for key, value in pairs(inst, variables):
            config = config.with_env(key, value)
    elif keyword == "LABEL":
        for key, value in pairs(inst, variables):
            config = config.with_label(key, value)
    elif keyword == "USER":
        config = dataclasses.replace(config, user=expand(_single(inst), variables))
    elif keyword == "WORKDIR":
        target = expand(unquote(_single(inst)), variables)
        config = dataclasses.replace(config, workdir=posixpath.normpath(posixpath.join(config.workdir or "/", target)))
    elif keyword == "EXPOSE":
        for port in inst.args:
            for item in expand(port, variables).split():
                config = config.with_port(item)
    elif keyword in ("CMD", "ENTRYPOINT"):
        command = tuple(inst.args) if inst.json_form else ("/bin/sh", "-c", " ".join(inst.args))
        if keyword == "CMD":
            config = dataclasses.replace(config, cmd=command)
        else:  # Docker: a new ENTRYPOINT drops the CMD inherited from the base
            config = dataclasses.replace(config, entrypoint=command, cmd=None)
    return config


def _named(chown: str, lower: Lower):
    """Where --chown's names are looked up, as Docker does: the filesystem below (the base and the rules under
    this one). Numeric ids read nothing, so they do not need the layers below built."""
    return lower.base if all(part.isdigit() for part in chown.split(":")) else lower.image()


def _single(inst: Instruction) -> str:
    if len(inst.args) != 1:
        raise InputError(f"{inst.keyword} takes one argument")
    return inst.args[0]


def _copy(rule: RuleSpec, ctx: BuildContext, config: ContainerConfig, inst: Instruction,
          variables: dict[str, str], lower: Lower) -> LayerStep:
    sources, dest_abs, selections, all_entries = copy_sources(ctx, config, inst, variables)
    workdir = config.workdir or "/"
    chown = inst.flag("chown")
    try:
        if chown:
            named = expand(chown, variables)
            owner = resolve_owner(named, None, _named(named, lower), ctx.store, f"COPY --chown={chown}")
        else:
            owner = resolve_owner(None, None, ctx.base, ctx.store, "COPY")
    except InputError as exc:
        if not ctx.dockerfile.runs_commands:
            raise
        raise InputError(f"{exc.message} (the native COPY reads the image's files below the Dockerfile; for a "
                         "user a RUN creates, build the Dockerfile with `backend: buildkit`)") from None
    chmod_text = inst.flag("chmod")
    try:
        chmod = int(chmod_text, 8) if chmod_text else None
    except ValueError:
        raise InputError(f"COPY --chmod={chmod_text}: expected an octal mode such as 0644") from None

    def make_items() -> list[LayerItem]:
        items: dict[str, LayerItem] = {}
        for entries, base, target in selections:
            if base is not None:
                mapped = layer_items(entries, base, target, owner, mode_override=chmod)
            else:
                mapped = [dataclasses.replace(layer_items(entries, "", "/", owner, mode_override=chmod)[0],
                                              path=target.strip("/"))]
            items.update((item.path, item) for item in mapped)
        return complete_parents(list(items.values()), owner, workdir)

    return LayerStep(
        rule=rule.name,
        step=f"{rule.name}:{inst.label}",
        config={"rule": rule.name, "version": rule.version, "instruction": inst.original, "sources": sources,
                "dest": dest_abs, "owner": [owner.uid, owner.gid], "chmod": chmod, "workdir": workdir},
        entries=all_entries,
        input_hash=merkle_root(all_entries, ""),
        make_items=make_items,
        created_by=inst.original,
    )


