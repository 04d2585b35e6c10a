"""Consecutive Dockerfile instructions run by BuildKit in one engine invocation: each RUN (and, with
the `buildkit` backend, each COPY) its own layer.

Every such instruction is a layer step keyed like any other (builder/actions/dockerfile/run.py says what
the key covers), chained to its parent's key. When one of them is missing from the store, the
whole segment runs again from its start: on the layers below it, loaded into the engine as
one image (unless the engine has it already), with the ENV, USER, WORKDIR and SHELL in
effect there as its config. So each RUN sees what the one before it left, as under
`docker build`, volatile files included. The new layers come back through `docker save`,
are normalised (builder/layers/normalise.py) and stored under their steps' keys; steps
the store already had keep their stored layers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from builder.layers import normalise as layer_normalise
from builder.actions.files import complete_parents, layer_items
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Instruction
from builder.docker.engine import EngineSession
from builder.docker.client import EngineBuildFailed, EngineClient
from builder.common.errors import BuildError
from builder.oci.image import BuiltImage, assemble
from builder.layers.tar import LayerItem, store_layer
from builder.oci.layout import write_archive
from builder.project.manifest import RuleSpec
from builder.actions.dockerfile.secrets import engine_secrets
from builder.actions.steps import BuildContext, LayerStep
from builder.store.store import LayerRecord, WorkDir
from builder.project.tree import Entry, merkle_root
from builder.common.resources import template_text

TEMPLATE = "buildkit.Dockerfile.j2"
RENDERED = {"ARG", "ENV", "USER", "WORKDIR", "SHELL", "RUN", "COPY"}  # what the rendered Dockerfile needs
LAYER_KEYWORDS = ("RUN", "COPY", "ADD")  # BuildKit history entries that stand for a step's layer


@dataclass
class EngineSegment:
    ctx: BuildContext
    rule: RuleSpec
    start_config: ContainerConfig   # in effect at the segment's start: the parent image's config
    start_args: dict[str, str]      # ARGs in scope there, declared again in the rendered Dockerfile
    lines: list[Instruction] = field(default_factory=list)
    steps: list[LayerStep] = field(default_factory=list)
    visible: dict[str, Entry] = field(default_factory=dict)  # project files the RUNs use
    context: dict[str, Entry] = field(default_factory=dict)  # project files the COPYs copy (buildkit backend)
    _outputs: dict[int, list[LayerItem]] | None = None
    _work: Path | None = None
    _held: WorkDir | None = None  # _work, locked against the store's sweep while this build uses it

    # -- planning --------------------------------------------------------------------------

    def add(self, inst: Instruction) -> None:
        if inst.keyword in RENDERED:
            self.lines.append(inst)

    def add_step(self, step: LayerStep, used: dict[str, Entry] | None = None,
                 context: list[Entry] | None = None) -> None:
        index = len(self.steps)
        step.make_items = lambda: self.make_items(index)
        step.cleanup = lambda: self.release(index)
        self.steps.append(step)
        self.visible.update(used or {})
        self.context.update((e.relpath, e) for e in context or [])

    def finish(self) -> None:
        """Every RUN of the segment sees the files any of them uses: each one's key covers them all."""
        entries = [self.visible[p] for p in sorted(self.visible)]
        root = merkle_root(entries, "")
        for step, inst in zip(self.steps, self.layer_lines):
            if inst.keyword != "RUN":
                continue
            step.entries, step.input_hash = entries, root
            if entries:
                owner = self.ctx.project_owner()
                step.config["project_files"] = {"workdir": self.ctx.manifest.workdir, "owner": [owner.uid, owner.gid]}

    @property
    def layer_lines(self) -> list[Instruction]:
        return [inst for inst in self.lines if inst.keyword in LAYER_KEYWORDS]

    @property
    def first(self) -> Instruction:
        return self.layer_lines[0]

    # -- building ------------------------------------------------------------------------------

    def make_items(self, index: int) -> list[LayerItem]:
        if self._outputs is None:
            self._run()
        return self._outputs[index]

    def release(self, index: int) -> None:
        if self._work is not None:
            shutil.rmtree(self._work / f"layer-{index}", ignore_errors=True)

    def close(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def _run(self) -> None:
        ctx = self.ctx
        path, first = ctx.dockerfile.path, self.first
        if ctx.state.engine is None:
            ctx.state.engine = EngineSession()
        engine = ctx.state.engine.require(f"{first.keyword} (rule {self.rule.name}, layer {self.steps[0].step})",
                                    path, first.line)
        _check_platform(engine.server_platform, str(ctx.platform), path, first.line)
        client = EngineClient(engine, ctx.state.engine)
        self._held = ctx.store.work_dir("buildkit")
        self._work = self._held.path
        ctx.state.cleanups.append(self.close)

        parent_image = self._parent_image()
        parent = self._load_parent(client, parent_image)
        last = max(i for i, inst in enumerate(self.lines) if inst.keyword in LAYER_KEYWORDS)
        lines = self.lines[:last + 1]
        self._stage_context(self._work / "context")
        dockerfile = self._render(parent, lines)
        declared = {name for inst in lines if inst.keyword == "ARG" for name in _arg_names(inst)}
        build_args = {**self.start_args, **{k: v for k, v in ctx.build_args.items() if k in declared}}
        ctx.state.engine.instructions += len(self.steps)
        with engine_secrets(ctx) as secrets:
            try:
                image = client.build(self._work / "context", dockerfile, build_args, secrets, self._work / "iid")
            except EngineBuildFailed as exc:
                failed = _failed_instruction(exc.output, lines) or first
                tail = "\n".join(exc.output.strip().splitlines()[-25:])
                raise BuildError(f"{failed.describe()} failed in BuildKit (rule {self.rule.name}):\n{tail}",
                                 path=path, line=failed.line or None) from None
        saved = self._work / "image.tar"
        try:
            client.save(image, saved)
        finally:
            client.remove(image)  # BuildKit's cache keeps what it needs; the store keeps the layers
        self._outputs = self._normalise(saved, len(parent_image.layers))
        saved.unlink()

    def _render(self, parent: str, lines: list[Instruction]) -> Path:
        """The Dockerfile BuildKit runs: FROM the parent, the ARGs in scope, the segment's lines."""
        dockerfile = self._work / "Dockerfile"
        template = jinja2.Template(template_text(TEMPLATE), keep_trailing_newline=True, trim_blocks=True)
        dockerfile.write_text(template.render(
            dockerfile=self.ctx.dockerfile.path.name, first_line=self.first.line, last_line=lines[-1].line,
            rule=self.rule.name, parent=parent, steps=len(self.steps), args=sorted(self.start_args),
            lines=[inst.original for inst in lines]))
        return dockerfile

    def _stage_context(self, directory: Path) -> None:
        """The build context of the segment's COPYs: their files, with airbuild's modes (umask-proof)."""
        directory.mkdir()
        for path, entry in sorted(self.context.items()):
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.kind == "dir":
                target.mkdir(exist_ok=True)
            elif entry.kind == "symlink":
                os.symlink(entry.link_target, target)
            else:
                shutil.copyfile(entry.abspath, target)
                os.chmod(target, entry.mode)

    def _parent_image(self) -> BuiltImage:
        """The image the segment runs on: the base, the layers below it and the project files it uses."""
        ctx = self.ctx
        below = self.steps[0].below
        missing = [layer.step.step for layer in below if layer.record is None]
        if missing:
            raise BuildError(f"{self.steps[0].step} runs on {', '.join(missing)}, which this command did not build")
        records: list[LayerRecord] = [layer.record for layer in below]
        history = [{"created_by": layer.step.created_by} for layer in below]
        if self.visible:
            records.append(self._project_files_layer())
            history.append({"created_by": "airbuild: the project files the RUN instructions use"})
        return assemble(ctx.store, ctx.base.config, ctx.base.layers, self.start_config, records, history, ctx.epoch)

    def _project_files_layer(self) -> LayerRecord:
        """The project files the RUNs use, at the workdir as Astro's `COPY . .` puts them (not in the image)."""
        ctx = self.ctx
        entries = [self.visible[p] for p in sorted(self.visible)]
        items = complete_parents(layer_items(entries, "", ctx.manifest.workdir, ctx.owner), ctx.owner,
                                 ctx.manifest.workdir)
        return store_layer(ctx.store, ctx.codec, items, ctx.epoch)

    def _load_parent(self, client: EngineClient, image: BuiltImage) -> str:
        """A tag for `image` in the engine: loaded unless the engine has it; the tag's previous image removed."""
        ctx = self.ctx
        tag = f"airbuild-parent/{ctx.variables['name']}:{self.rule.name}-{self.first.line}"
        previous = client.image_of(tag)
        if previous == image.config_digest:
            return tag
        if client.image_exists(image.config_digest):
            client.tag(image.config_digest, tag)
        else:
            archive = self._work / "parent.tar"
            write_archive(ctx.store, image, archive, tag)
            client.load(archive)
            archive.unlink()
        if previous is not None:
            client.remove(previous)  # the parent an earlier build used, unless something else needs it
        return tag

    def _normalise(self, saved: Path, parent_count: int) -> dict[int, list[LayerItem]]:
        ctx = self.ctx
        with tarfile.open(saved) as outer:
            groups = self._layer_groups(outer, parent_count)
            outputs = {}
            for index, (step, group) in enumerate(zip(self.steps, groups)):
                streams = [outer.extractfile(outer.getmember(name)) for name in group]
                items, dropped = layer_normalise.normalise(streams, self._work / f"layer-{index}", ctx.epoch)
                if dropped:
                    more = f" (+{len(dropped) - 3} more)" if len(dropped) > 3 else ""
                    ctx.state.notes.append(f"{step.step}: left out of the layer: {', '.join(dropped[:3])}{more}")
                outputs[index] = items
        return outputs

    def _layer_groups(self, outer: tarfile.TarFile, parent_count: int) -> list[list[str]]:
        """The saved image's new layer files, grouped by the step each belongs to (a WORKDIR's with its RUN)."""
        manifest = json.load(outer.extractfile(outer.getmember("manifest.json")))[0]
        config = json.load(outer.extractfile(outer.getmember(manifest["Config"])))
        new = manifest["Layers"][parent_count:]
        history = [h for h in config.get("history", []) if not h.get("empty_layer")]
        groups: list[list[str]] = []
        pending: list[str] = []
        for name, entry in zip(new, history[len(history) - len(new):] if new else []):
            pending.append(name)
            if entry.get("created_by", "").split(" ", 1)[0] in LAYER_KEYWORDS:
                groups.append(pending)
                pending = []
        if pending and groups:
            groups[-1].extend(pending)
        if len(groups) != len(self.steps):
            raise BuildError(f"BuildKit's image has {len(groups)} layer(s) for the {len(self.steps)} "
                             f"instruction(s) of lines {self.first.line}-{self.lines[-1].line} that make one",
                             path=self.ctx.dockerfile.path, line=self.first.line)
        return groups


def _arg_names(inst: Instruction) -> list[str]:
    return [item.split("=", 1)[0] for item in inst.args]


def _check_platform(engine_platform: str, wanted: str, path: Path, line: int) -> None:
    if engine_platform and not wanted.startswith(engine_platform):
        raise BuildError(f"the build is for {wanted}, but the Docker engine runs {engine_platform}: RUN cannot "
                         "run there", path=path, line=line)


def _failed_instruction(output: str, lines: list[Instruction]) -> Instruction | None:
    """The instruction BuildKit's output names as the one that failed (` > [2/3] RUN ...:`)."""
    for match in re.finditer(r"^\s*> \[[^\]]*\] (.+?):?\s*$", output, re.MULTILINE):
        shown = " ".join(match.group(1).split())
        for inst in lines:
            if inst.keyword in LAYER_KEYWORDS and " ".join(inst.original.split()).startswith(shown.rstrip(":")[:60]):
                return inst
    return None
