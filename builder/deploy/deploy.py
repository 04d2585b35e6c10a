"""`airbuild deploy`: validate, build, push what the registry lacks, tag, record.

Refused (exit 2) unless --force: a dirty git tree, DAG files that do not compile, a
failing `--pytest` run. `--dags` replaces only the DAG layer of the target's current
image (the target's first tag, else the last deploy recorded here) and pushes that one
layer, the config and the manifest.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.deploy import records as deploy_record
from builder.engine.build import BuildOptions, _build_layer, build, prepare, run_tests
from builder.oci.config import ContainerConfig
from builder.engine.gate import ValidationFailed, check_dags, validation_inputs
from builder.validate.syntax import syntax_errors
from builder.common.errors import BuildError, InputError
from builder.oci.image import BuiltImage
from builder.project.manifest import Manifest, Target, load_manifest
from builder.oci.descriptors import CONFIG_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, canonical_json, descriptor
from builder.registry import docker_config
from builder.registry.connect import open_client
from builder.registry.pull import Puller
from builder.registry.push import Pusher
from builder.registry.reference import Reference, parse_reference, parse_repository
from builder.common.paths import default_store_dir
from builder.store.store import LayerRecord, Store
from builder.validate.run import ValidationInputs

DAGS_RULE = "dags"
DOCKER_GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class DeployRefused(InputError):
    """A deploy that would ship something unchecked or uncommitted (exit 2; --force overrides)."""


@dataclass
class DeployOptions:
    build: BuildOptions                   # the image, as `airbuild build` makes it; its force also waives a
                                          # dirty git tree and failing tests
    target: str | None = None
    to: str | None = None
    insecure: bool = False
    pytest: bool = False
    dags_only: bool = False
    description: str | None = None
    ca_bundle: Path | None = None
    allow_dirty: bool = False             # a dirty git tree is fine (watch), and nothing else is waived


@dataclass
class DeployResult:
    target: str
    reference: str
    manifest_digest: str
    tag: str
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_uploaded: int
    duration_s: float
    tags: list[str]
    dags_only: bool
    git_commit: str | None
    description: str
    warnings: list[str]
    validation_skipped: str | None = None  # why the DAGs were not imported before the push

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class GitState:
    commit: str | None
    dirty: list[str]
    message: str


def choose_target(manifest: Manifest, name: str | None, to: str | None, insecure: bool) -> tuple[str, Target]:
    if name and to:
        raise InputError("give --target or --to, not both")
    if to:
        parse_repository(to)
        return to, Target(registry=to, insecure=insecure)
    targets = manifest.targets
    if name:
        if name not in targets:
            raise InputError(f"no target {name!r} in astro.yaml; targets: {', '.join(sorted(targets)) or 'none'}")
        return name, targets[name]
    if len(targets) == 1:
        return next(iter(targets.items()))
    if not targets:
        raise InputError("nowhere to deploy: add `targets:` to astro.yaml (e.g. targets: {prod: {registry: "
                         "host/repo}}) or give --to host/repo")
    raise InputError(f"astro.yaml has {len(targets)} targets ({', '.join(sorted(targets))}); choose one with --target")


def git_state(project: Path) -> GitState:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
    except OSError:
        return GitState(None, [], "")
    if head.returncode != 0:
        return GitState(None, [], "")
    status = git("status", "--porcelain", "--untracked-files=all", "--", ".")
    dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    message = git("log", "-1", "--format=%B").stdout.strip()
    return GitState(head.stdout.strip(), dirty, message)


def _refuse_or_warn(problem: str, force: bool, warnings: list[str]) -> None:
    if not force:
        raise DeployRefused(problem + "; fix it, or deploy anyway with --force")
    warnings.append(problem + " (deployed with --force)")


def _run_pytest(options: BuildOptions) -> str | None:
    """None when the project's tests pass in the DAG sandbox (or there are none); else why not."""
    if not (options.project / "tests").is_dir():
        return None
    code = run_tests(options, ["-q"], to_stderr=True)  # stdout is for deploy's own result
    if code in (0, 5):  # 5: no tests collected
        return None
    return f"the project's tests failed in the sandbox (pytest exit {code}; pytest must be in requirements.txt)"


def deploy(options: DeployOptions) -> DeployResult:
    started = time.monotonic()
    project = options.build.project.resolve()
    build_options = dataclasses.replace(options.build, project=project, astro_tests=True)  # as astro deploy parses
    force, progress = build_options.force, build_options.progress
    manifest, _ = load_manifest(project)
    name, target = choose_target(manifest, options.target, options.to, options.insecure)
    repo = parse_repository(target.registry)
    warnings: list[str] = []

    git = git_state(project)
    if git.dirty and not options.allow_dirty:
        shown = ", ".join(git.dirty[:5]) + (f" (+{len(git.dirty) - 5} more)" if len(git.dirty) > 5 else "")
        _refuse_or_warn(f"the git tree has uncommitted changes: {shown}", force, warnings)
    progress.step("checking DAG files")
    errors = syntax_errors(project)
    if errors:
        _refuse_or_warn("DAG files do not compile:\n  " + "\n  ".join(errors), force, warnings)
    description = options.description if options.description is not None else git.message
    # CI credentials in AIRBUILD_REGISTRY_* are for the target; a base pulled from the same registry uses them too.
    os.environ.setdefault(docker_config.ENV_REGISTRY, repo.registry)

    if options.pytest:
        progress.step("running the project's tests in the sandbox")
        failed = _run_pytest(build_options)
        if failed:
            _refuse_or_warn(failed, force, warnings)
    with open_client(repo.registry, insecure=target.insecure, ca_bundle=options.ca_bundle,
                     env_registry=repo.registry) as client:
        store = Store(default_store_dir())
        try:
            if options.dags_only:
                manifest_digest = _dags_only_image(build_options, store, client, repo, name, target)
            else:
                result = build(build_options)  # validates the DAGs in the sandbox; refuses unless --force
                manifest_digest = result.manifest_digest
                if result.lock_changed:
                    warnings.append("astro.lock changed (the base moved): commit it")
                if result.validation and result.validation["status"] == "failed":
                    warnings.append("DAG validation failed (deployed with --force)")
            tag = BuiltImage(manifest_digest, 0, "", ()).tag
            tags = [tag] + [t for t in target.tags if t != tag]
            progress.step(f"pushing to {repo.name}")
            stats = Pusher(client, store, repo.repository).push(manifest_digest, tags)
        finally:
            store.close()

    reference = f"{repo.name}@{manifest_digest}"
    outcome = DeployResult(
        target=name, reference=reference, manifest_digest=manifest_digest, tag=tag,
        blobs_uploaded=stats.blobs_uploaded, blobs_skipped=stats.blobs_skipped, blobs_mounted=stats.blobs_mounted,
        bytes_uploaded=stats.bytes_uploaded, duration_s=round(time.monotonic() - started, 4), tags=tags,
        dags_only=options.dags_only, git_commit=git.commit, description=description, warnings=warnings,
        validation_skipped=build_options.skip_reason)
    deploy_record.append(project, {
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": name, "registry": target.registry, "reference": reference, "digest": manifest_digest,
        "tag": tag, "tags": tags, "git_commit": git.commit, "description": description,
        "bytes_uploaded": stats.bytes_uploaded, "blobs_uploaded": stats.blobs_uploaded,
        "dags_only": options.dags_only, "forced": bool(warnings) and force})
    return outcome


# -- --dags: the target's current image with a new DAG layer --------------------------------------

def _current_reference(project: Path, name: str, target: Target, repo: Reference) -> Reference:
    if target.tags:
        return parse_reference(f"{repo.name}:{target.tags[0]}")
    for record in reversed(deploy_record.read(project, name)):
        if record.get("registry") == target.registry:
            return parse_reference(record["reference"])
    raise InputError(f"--dags: target {name!r} has no current image to reuse: it names no `tags` and no deploy "
                     "to it is recorded here; run a full deploy first")


def _dags_only_image(options: BuildOptions, store: Store, client, repo: Reference, name: str,
                     target: Target) -> str:
    prepared = prepare(options, store)
    current = _current_reference(prepared.ctx.project, name, target, repo)
    options.progress.step(f"--dags: reusing {current}")
    remote = Puller(client, store).pull(current, prepared.ctx.platform, layers=False)
    planned = [layer for layer in prepared.plan.layers if layer.step.rule == DAGS_RULE]
    if len(planned) != 1:
        raise InputError(f"--dags needs exactly one layer from the `{DAGS_RULE}` rule; this project's rules make "
                         f"{len(planned)}")
    layer = planned[0]
    if layer.record is None:
        layer.record = _build_layer(prepared.ctx, layer, options.progress)
    if options.validate:
        report = check_dags(prepared.ctx, prepared.plan,
                            _remote_environment(prepared, Puller(client, store), current, remote),
                            astro_tests=options.astro_tests)
        if report.failed and not options.force:
            raise ValidationFailed(report)
    prepared.statcache.save()
    return splice_layer(store, remote.manifest, json.loads(remote.config_bytes), layer.record,
                        layer.step.created_by, current)


def _remote_environment(prepared, puller: Puller, current: Reference, remote) -> ValidationInputs:
    """What the new DAGs will be imported against once spliced: the target image's own layers but the
    project's (its environment, which may differ from this checkout's), and its config's Env."""
    config = json.loads(remote.config_bytes)
    project_rules = {layer.step.rule for layer in prepared.plan.layers if layer.step.project_content}
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    environment = []
    for entry, descriptor_, diff_id in zip(history, remote.manifest["layers"], config["rootfs"]["diff_ids"]):
        if any(entry.get("created_by", "").startswith(f"airbuild {rule}:") for rule in project_rules):
            continue
        environment.append(LayerRecord(diff_id, descriptor_["digest"], descriptor_["size"], descriptor_["mediaType"]))
    puller.fetch_layers(current, environment)  # only those the store lacks
    inputs = validation_inputs(prepared.ctx, prepared.plan)
    return dataclasses.replace(inputs, env_layers=environment,
                               image_env=ContainerConfig.from_oci(config.get("config")).env_dict())


def splice_layer(store: Store, manifest: dict, config: dict, record: LayerRecord, created_by: str,
                 where: Reference) -> str:
    """Put `record` in place of the image's DAG layer; returns the new manifest's digest (in the store)."""
    config = copy.deepcopy(config)
    layer_history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    index = next((i for i, h in enumerate(layer_history)
                  if h.get("created_by", "").startswith(f"airbuild {DAGS_RULE}:")), None)
    if index is None or len(layer_history) != len(manifest["layers"]):
        raise InputError(f"--dags: {where} has no DAG layer made by airbuild; run a full deploy first")
    config["rootfs"]["diff_ids"][index] = record.diff_id
    layer_history[index]["created_by"] = created_by  # the same dict objects as in config["history"]
    config_bytes = canonical_json(config)
    manifest = copy.deepcopy(manifest)
    media_type = record.media_type
    if manifest.get("mediaType") == DOCKER_MANIFEST_MEDIA_TYPE:
        if not media_type.endswith("+gzip"):
            raise BuildError(f"--dags: {where} is a Docker image, which cannot carry a {media_type} layer")
        media_type = DOCKER_GZIP_LAYER
    manifest["layers"][index] = descriptor(media_type, record.digest, record.size)
    manifest["config"] = descriptor(manifest["config"].get("mediaType", CONFIG_MEDIA_TYPE),
                                    store.put_blob(config_bytes), len(config_bytes))
    manifest.setdefault("mediaType", MANIFEST_MEDIA_TYPE)
    return store.put_blob(canonical_json(manifest))
