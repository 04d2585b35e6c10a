"""What a rule's action is given (the build's inputs, the filesystem below it) and what it yields:
layer steps (content) and config steps (image settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from builder.bases.image import BaseImage
from builder.layers.compress import Codec
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Dockerfile
from builder.layers.tar import LayerItem
from builder.project.lock import LockState
from builder.project.manifest import Manifest, SecretSpec
from builder.oci.descriptors import Platform
from builder.bases.accounts import Ownership
from builder.store.store import LayerRecord, Store
from builder.project.tree import Entry, ProjectTree
from builder.common.errors import NotLocal
from builder.common.hashing import json_sha256


@dataclass
class BuildState:
    """What one build accumulates while its rules run (the only mutable part of a build's context)."""

    lock: LockState  # pinned sections to reuse; resolving rules record theirs here
    notes: list[str] = field(default_factory=list)  # for the build output (e.g. skipped maintainer scripts)
    engine: Any = None                      # builder.docker.client.EngineSession: found on first use only
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run when the build ends, however it ends
    onbuild_report: list[dict] = field(default_factory=list)  # what became of each trigger (bases.onbuild.report)


@dataclass(frozen=True)
class BuildContext:
    """The inputs of one build, fixed before any rule runs, and its `state`."""

    project: Path
    manifest: Manifest
    manifest_path: Path | None
    dockerfile: Dockerfile
    base: BaseImage
    store: Store
    tree: ProjectTree
    platform: Platform
    codec: Codec
    epoch: int
    owner: Ownership | None                 # of project files; None in a read-only plan that could not read it
    variables: dict[str, str]
    state: BuildState
    backend: str = "auto"                   # native | auto | buildkit (see builder/docker/engine.py)
    sandbox: str | None = None              # for DAG validation, over the manifest's (see builder/validate/sandbox.py)
    validation_workers: int | None = None   # --workers: sandboxes importing DAG files at once, over the manifest's
    env_file: Path | None = None            # the DAGs' variables (--env), else the project's .env
    build_args: dict[str, str] = field(default_factory=dict)  # values for the Dockerfile's ARGs
    secrets: tuple[SecretSpec, ...] = ()    # for RUN --mount=type=secret; never in a key or a layer
    onbuild: tuple[Any, ...] = ()           # the base's ONBUILD triggers (builder.bases.onbuild.Trigger)
    read_only: bool = False                 # `plan`: never resolve, fetch layer blobs or build (NotLocal instead)
    shared: Any = None                      # the team's cache (builder.cache.remote.RemoteCache) for records; None

    def project_owner(self) -> Ownership:
        if self.owner is None:
            raise NotLocal("the owner of project files is a name in the base's /etc/passwd, and the base's "
                           "layers are not in the store")
        return self.owner

    def resolving(self, what: str) -> None:
        """Called before a rule resolves `what` (the lock did not pin it): a read-only plan stops there."""
        if self.read_only:
            raise NotLocal(f"{what} is not pinned by the lock (new, or changed since the lock was written): "
                           "resolving it needs the package index; `airbuild lock` resolves and pins it")


@dataclass(frozen=True)
class Lower:
    """The filesystem a rule's action sees: the base with the layers planned below the rule on top."""

    base: BaseImage
    layers: tuple[Any, ...] = ()            # builder.engine.plan.PlannedLayer, bottom first
    materialise: Callable[[Any], LayerRecord] | None = None  # builds a layer the store lacks; None: read-only

    def image(self) -> BaseImage:
        """The base extended by the layers below, each built first when the store does not have it."""
        if not self.layers:
            return self.base
        records = tuple(self._record(layer) for layer in self.layers)
        rules = ", ".join(dict.fromkeys(layer.step.rule for layer in self.layers))
        return dataclasses.replace(self.base, description=f"{self.base.description} with the layers of {rules}",
                                   layers=self.base.layers + records)

    def _record(self, layer) -> LayerRecord:
        if layer.record is None:
            if self.materialise is None:
                raise NotLocal(f"it reads the files of the `{layer.step.rule}` layer below it, which is not built")
            layer.record = self.materialise(layer)
        return layer.record


@dataclass
class LayerStep:
    rule: str
    step: str                       # unique within the build, e.g. "dags" or "dockerfile:COPY@12"
    config: dict[str, Any]          # everything besides the inputs that shapes the layer
    entries: list[Entry]            # the project files it takes
    input_hash: str                 # Merkle root of `entries`
    make_items: Callable[[], list[LayerItem]]
    created_by: str
    cleanup: Callable[[], None] | None = None  # removes what make_items staged, once the layer is stored
    project_content: bool = False  # the project's own files (not part of the environment DAGs import against)
    below: tuple[Any, ...] = ()     # the planned layers under this one (builder.plan.PlannedLayer), set by the plan

    @property
    def config_hash(self) -> str:
        return json_sha256(self.config)


@dataclass
class ConfigStep:
    rule: str
    created_by: str


Step = LayerStep | ConfigStep


@dataclass
class ActionResult:
    steps: list[Step]
    config: ContainerConfig
    siblings: bool = False  # the steps' layers do not read each other (split files, Python buckets): keyed side by side
