"""Orchestrate a build: manifest -> base -> plan -> layers -> image -> outputs and records."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.common import masking
from builder.bases import onbuild
from builder.engine import stamp
from builder.common.atomic import atomic_write_bytes
from builder.common.hashing import json_sha256
from builder.bases.resolve import BaseImage, resolve_base
from builder.cache.remote import CacheSettings, RemoteCache
from builder.layers.compress import Codec
from builder.engine.gate import ValidationFailed, check_dags, validation_inputs
from builder.registry.reference import parse_repository
from builder.validate.dag_run import run_dag as run_in_sandbox
from builder.validate.memory import ValidationMemory
from builder.validate.run import run_project_tests
from builder.oci.config import ContainerConfig
from builder.project.dockerfile import Dockerfile, parse_dockerfile
from builder.common.errors import BuildError, InputError, NotLocal
from builder.project.ignore import IgnoreRules
from builder.oci.image import BuiltImage, assemble
from builder.layers.tar import FileChangedError, store_layer
from builder.oci.layout import write_archive, write_layout
from builder.project.lock import BasePin, Lock, LockState, check_base
from builder.project.manifest import BaseSource, Manifest, SecretSpec, load_manifest
from builder.project.naming import default_name
from builder.oci.descriptors import Platform
from builder.bases.accounts import Ownership, resolve_owner
from builder.engine.plan import Plan, make_plan
from builder.engine.project_lock import ensure_output_dir, project_locked
from builder.common.paths import DOCKERIGNORE_NAME, MANIFEST_NAME, OUTPUT_DIR
from builder.common.progress import Progress
from builder.engine.rules import rule_list, rules_dir
from builder.engine.state import PreviousBuild
from builder.project.statcache import StatCache
from builder.actions.steps import BuildContext, BuildState
from builder.common.paths import default_store_dir
from builder.store.store import Store
from builder.project.tree import Scanned, scan_project, walk_project



@dataclass
class BuildOptions:
    project: Path
    oci_dir: Path | None = None
    archive: Path | None = None
    locked: bool = False
    upgrade: bool | frozenset[str] = False  # re-resolve pinned packages (all, or these names)
    base: BaseSource | None = None
    progress: Progress = field(default_factory=lambda: Progress(False))
    scanned: list[Scanned] | None = None  # a walk already made (by the no-op check)
    validate: bool = True                 # import the DAGs in the sandbox before writing anything
    validation_skipped: str | None = None  # why not (--no-validate, Astro's skip-parse settings), for the output
    force: bool = False                   # ship despite DAG errors
    started_ns: int = field(default_factory=time.time_ns)
    backend: str | None = None            # overrides the manifest's: native | auto | buildkit
    build_args: dict[str, str] = field(default_factory=dict)  # over the manifest's build_args
    secrets: tuple[str, ...] = ()         # --secret values (id=ID,src=FILE|env=VAR), besides the manifest's
    sandbox: str | None = None            # --sandbox / --no-sandbox, over validation.sandbox
    validation_workers: int | None = None  # --workers, over validation.workers
    env_file: Path | None = None          # --env: the variables DAG code sees (default: the project's .env)
    astro_tests: bool = False             # validation also runs .astro/test_dag_integrity_default.py (deploy)
    validation_memory: ValidationMemory | None = None  # watch's, kept between its builds; None: a fresh one
    cache_repo: str | None = None         # --cache-repo: the shared cache, over AIRBUILD_CACHE_REPO and the manifest's
    cache_required: bool = False          # --cache-required: an unusable shared cache fails the build
    store_dir: Path | None = None         # the store to build in (default: the machine's, default_store_dir)
    shared_cache: bool = True             # False: no shared cache, even when one is configured (verify)

    @property
    def skip_reason(self) -> str | None:
        return None if self.validate else self.validation_skipped or "--no-validate"


@dataclass
class LayerResult:
    rule: str
    key: str | None
    diff_id: str
    digest: str
    size: int
    cached: bool
    reason: str
    files_read: int = 0
    source: str | None = None  # base | local | remote (the shared cache) | built; None: not built (a plan)


@dataclass
class BuildResult:
    manifest_digest: str | None
    config_digest: str | None
    tag: str | None
    oci_layout: str | None
    archive: str | None
    duration_s: float
    layers: list[LayerResult]
    image_name: str
    lock_changed: bool = False
    validation: dict | None = None
    validation_skipped: str | None = None  # why the DAGs were not imported (validation is then None)
    notes: list[str] = field(default_factory=list)  # what the user should know (skipped scripts...)
    onbuild: list[dict] = field(default_factory=list)  # the base's ONBUILD triggers: replaced, or how each ran
    engine: dict | None = None  # the container engine RUN layers were built with; None when none was used
    cache: dict | None = None   # the shared cache: hits, misses, bytes down and up, warnings; None without one
    gc: dict | None = None      # what the store's gc after this build evicted (cache gc's report); None: none ran

    def to_json(self) -> dict:
        # Shallow (the validation report is already plain data): asdict would deep-copy it on every call.
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["layers"] = [dataclasses.asdict(layer) for layer in self.layers]
        return out


@dataclass
class Prepared:
    ctx: BuildContext
    plan: Plan
    lock: Lock  # what this build resolved: the lock file it would write
    statcache: StatCache
    previous: PreviousBuild
    output_dir: Path
    scanned: list[Scanned]
    inputs: "Inputs"
    remote: RemoteCache | None = None  # the shared cache, when one is set (never for a read-only plan)


def epoch_from_env() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not raw.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, got {raw!r}")
    return int(raw)


@dataclass
class Inputs:
    project: Path
    manifest: Manifest
    manifest_path: Path | None
    dockerfile: Dockerfile
    platform: Platform
    codec: Codec
    base: BaseImage
    base_pin: BasePin
    lock_state: LockState
    epoch: int

    @property
    def lock_path(self) -> Path:
        return self.project / self.manifest.lockfile


def load_inputs(options: BuildOptions, store: Store, read_only: bool = False) -> Inputs:
    """The manifest, Dockerfile and resolved base: everything the lock is about.

    `read_only` (a plan): a registry base's manifest and config only, a Debian base only if built (else NotLocal).
    """
    project = options.project.resolve()
    if not project.is_dir():
        raise InputError(f"project directory {options.project} does not exist")
    manifest, manifest_path = load_manifest(project)
    dockerfile = parse_dockerfile(project / manifest.dockerfile, {**manifest.build_args, **options.build_args})
    platform = Platform.parse(manifest.platform)
    codec = Codec(manifest.compression.codec, manifest.compression.effective_level)
    lock_path = project / manifest.lockfile
    lock_state = LockState(lock_path, Lock.read(lock_path), options.locked, options.upgrade)
    epoch = epoch_from_env()
    options.progress.step("resolving the base image")
    # --locked: a registry tag resolves to the digest the lock pins, wherever the tag went since.
    pinned = lock_state.pinned.base if options.locked and lock_state.pinned else None
    base = resolve_base(options.base or manifest.base, dockerfile.base_ref, project, store, platform, codec,
                        lock=lock_state, epoch=epoch, pinned=pinned, insecure=insecure_registries(manifest),
                        workdir=manifest.workdir, read_only=read_only)
    pin = BasePin(source=base.description, digest=base.digest)
    return Inputs(project, manifest, manifest_path, dockerfile, platform, codec, base, pin, lock_state, epoch)


def insecure_registries(manifest: Manifest) -> frozenset[str]:
    """Registries a target marks `insecure: true`: base pulls from them may use plain HTTP too."""
    return frozenset(parse_repository(t.registry).registry for t in manifest.targets.values() if t.insecure)


def write_lock(options: BuildOptions) -> tuple[Lock, Path, bool]:
    """Resolve everything a build would and write the lock (a layer is built only when a rule above it must read
    its files to resolve: a requirements file over a packages.txt)."""
    with project_locked(options.project.resolve()):
        store = Store(default_store_dir())
        prepared = None
        try:
            prepared = prepare(options, store)
            path = prepared.inputs.lock_path
            return prepared.lock, path, prepared.lock.write(path)
        finally:
            _end(prepared, store)  # the staging of a layer built on the way, the shared cache's connection


def prepare(options: BuildOptions, store: Store, read_only: bool = False) -> Prepared:
    """Inputs, context and plan. A build's plan materialises the layers an action reads below it;
    a `read_only` one fetches no layer blob, resolves and builds nothing (see builder.engine.plan)."""
    inputs = load_inputs(options, store, read_only)
    project, manifest, base = inputs.project, inputs.manifest, inputs.base
    lock_state, epoch = inputs.lock_state, inputs.epoch
    if options.locked:
        check_base(lock_state, inputs.base_pin)
    output_dir = project / OUTPUT_DIR
    ensure_output_dir(output_dir)

    initial = ContainerConfig.from_oci(base.config.get("config"))
    if "workdir" in manifest.model_fields_set or not initial.workdir:
        initial = dataclasses.replace(initial, workdir=manifest.workdir)
    try:
        owner = project_owner(manifest, initial, base, store)
    except NotLocal:
        if not read_only:
            raise
        owner = None  # the rules that need it say so (BuildContext.project_owner)

    options.progress.step("hashing project files")
    statcache = StatCache(output_dir / "statcache.json")
    ignore = IgnoreRules.for_project(project)
    scanned = options.scanned if options.scanned is not None else scan_project(project, ignore)
    tree = walk_project(project, ignore, statcache, scanned)
    rules = rule_list(manifest, inputs.manifest_path)
    remote = None if read_only else shared_cache(options, manifest, store, inputs.codec)
    ctx = BuildContext(project=project, manifest=manifest, manifest_path=inputs.manifest_path,
                       dockerfile=inputs.dockerfile, base=base, store=store, tree=tree, platform=inputs.platform,
                       codec=inputs.codec, epoch=epoch, state=BuildState(lock_state),
                       owner=owner, variables={"workdir": manifest.workdir, "name": image_name(project, manifest.name),
                                               "platform": str(inputs.platform)},
                       backend=options.backend or manifest.backend,
                       build_args={**manifest.build_args, **options.build_args},
                       secrets=_secrets(manifest.secrets, options.secrets), sandbox=options.sandbox,
                       validation_workers=options.validation_workers,
                       env_file=options.env_file, onbuild=tuple(onbuild.base_triggers(
                           base.config, rules, inputs.dockerfile.base_line)), read_only=read_only, shared=remote)
    previous = PreviousBuild.load(output_dir / "state.json")
    ctx.state.onbuild_report.extend(onbuild.report(t) for t in ctx.onbuild if t.replaced_by)
    store.elsewhere = remote  # a pinned .deb or wheel its origin no longer serves: the team's cache may have it
    materialise = None if read_only else (lambda layer: _build_layer(ctx, layer, options.progress, remote))
    plan = make_plan(ctx, rules, initial, previous, statcache.hashed_paths, materialise)
    lock = Lock(inputs.base_pin, dict(sorted(lock_state.resolved.items())))
    return Prepared(ctx, plan, lock, statcache, previous, output_dir, scanned, inputs, remote)


def shared_cache(options: BuildOptions, manifest: Manifest, store: Store, codec: Codec) -> RemoteCache | None:
    if not options.shared_cache:
        return None
    settings = CacheSettings.choose(options.cache_repo, manifest.cache, options.cache_required)
    return RemoteCache(settings, store, codec.cache_id) if settings else None


def project_owner(manifest: Manifest, initial: ContainerConfig, base: BaseImage, store: Store) -> Ownership:
    """Who owns the project's files: the manifest's `owner`, else the base's USER (names read from its files)."""
    if manifest.owner is not None:
        return resolve_owner(manifest.owner.user, manifest.owner.group, base, store, "owner")
    return resolve_owner(initial.user.split(":")[0] or None, 0, base, store, "the base image's USER")


def _secrets(from_manifest: list[SecretSpec], given: tuple[str, ...]) -> tuple[SecretSpec, ...]:
    """The manifest's secrets (files relative to the project) and --secret ones (relative to here); same id: --secret."""
    by_id = {s.id: s for s in from_manifest}
    for text in given:
        spec = SecretSpec.parse(text)
        if spec.src is not None:
            spec = spec.model_copy(update={"src": str(Path(spec.src).resolve())})
        by_id[spec.id] = spec
    return tuple(by_id.values())


def up_to_date(options: BuildOptions, store: Store) -> BuildResult | None:
    """The last build's result when its stamp proves that nothing it read has changed since and the store still
    holds the image (what `airbuild build` answers an unchanged project with), for a command that builds on its
    way (deploy); else None, with the walk made kept in `options` for the build that runs then."""
    found, options.scanned = stamp.try_noop(options.project.resolve(), build_settings(options))
    if found is None:
        return None
    result = BuildResult(**{**found, "layers": [LayerResult(**layer) for layer in found["layers"]]})
    blobs = [result.manifest_digest, result.config_digest, *(layer.digest for layer in result.layers)]
    return result if all(digest and store.has_blob(digest) for digest in blobs) else None


def build(options: BuildOptions) -> BuildResult:
    with project_locked(options.project.resolve()):
        return _build(options)


def _build(options: BuildOptions) -> BuildResult:
    started = time.monotonic()
    store = Store(options.store_dir or default_store_dir())
    prepared = None
    try:
        prepared = prepare(options, store)
        ctx, plan, remote = prepared.ctx, prepared.plan, prepared.remote
        if remote is not None:  # asked at once, before any is built: the misses, and what a readwrite cache lacks
            remote.lookup([layer.key for layer in plan.layers
                           if layer.record is None or remote.settings.mode == "readwrite"])
        records = []
        for layer in plan.layers:
            if layer.record is None:
                layer.record = _build_layer(ctx, layer, options.progress, remote)
            records.append(layer.record)
        report = None
        if options.validate:
            options.progress.step("importing DAGs in the sandbox")
            report = check_dags(ctx, plan, astro_tests=options.astro_tests, memory=options.validation_memory,
                                shared=remote)
            if report.failed and not options.force:
                raise ValidationFailed(report)
        if remote is not None:  # only what this build made and verified
            _publish(remote, plan, prepared.lock, options.progress)
        image = assemble(store, ctx.base.config, ctx.base.layers, plan.config, records, plan.history, ctx.epoch)
        oci_dir = (options.oci_dir or prepared.output_dir / "image").resolve()
        options.progress.step(f"writing the OCI layout {oci_dir}")
        write_layout(store, image, oci_dir, merge=options.oci_dir is not None)  # --oci DIR: other images stay
        name = image_name(ctx.project, ctx.manifest.name)
        archive = None
        if options.archive is not None:
            archive = options.archive.resolve()
            options.progress.step(f"writing the archive {archive}")
            write_archive(store, image, archive, f"{name}:{image.tag}")
        lock_changed = False if options.locked else prepared.lock.write(ctx.project / ctx.manifest.lockfile)
        result = _result(prepared, image, oci_dir, archive, time.monotonic() - started, name, lock_changed)
        result.validation = report.to_json() if report else None
        result.validation_skipped = options.skip_reason
        _record(prepared, result, options, image, oci_dir)
    finally:
        _end(prepared, store)
    if store.collected is not None:  # the store was over its configured limits: this build's end collected it
        result.gc = store.collected.to_json()
    return result


def _publish(remote: RemoteCache, plan: Plan, lock: Lock, progress: Progress) -> None:
    """The layers the cache lacks, made here or found in the local store, once this build verified them;
    and the lock's files (so the lock still builds when an archive or index drops them)."""
    missing = [layer for layer in plan.layers if layer.source in ("built", "local") and remote.lacks(layer.key)]
    if missing:
        progress.step(f"writing {len(missing)} layer(s) to the shared cache {remote.settings.repo}")
    for layer in missing:
        remote.publish(layer.key, layer.record)
    files = lock.pinned_files()
    remote.publish_inputs(json_sha256(files), files)


def _end(prepared: "Prepared | None", store: Store) -> None:
    """Run what the build's steps left to clean up (engine staging), then release the store."""
    try:
        for cleanup in reversed(prepared.ctx.state.cleanups if prepared else []):
            cleanup()
    finally:
        if prepared is not None and prepared.remote is not None:
            prepared.remote.close()
        store.close()


def plan_only(options: BuildOptions) -> BuildResult:
    """`airbuild plan`: every layer's key and whether the store has it, read-only (see prepare)."""
    started = time.monotonic()
    store = Store(default_store_dir())
    prepared = None
    try:
        try:
            prepared = prepare(options, store, read_only=True)
        except NotLocal as exc:  # the base itself: a Debian base not built yet
            project = options.project.resolve()
            manifest, _ = load_manifest(project)
            return BuildResult(None, None, None, None, None, round(time.monotonic() - started, 4),
                               [LayerResult("base", None, None, None, None, False, f"key not known: {exc.message}")],
                               image_name(project, manifest.name))
        prepared.statcache.save()
        _plan_remote(options, prepared, store)
        name = image_name(prepared.ctx.project, prepared.ctx.manifest.name)
        return _result(prepared, None, None, None, time.monotonic() - started, name, False)
    finally:
        if prepared is not None and prepared.remote is not None:
            prepared.remote.close()
        store.close()


def _plan_remote(options: BuildOptions, prepared: Prepared, store: Store) -> None:
    """A plan asks the shared cache (manifests only) which of the layers to build it would supply."""
    remote = shared_cache(options, prepared.ctx.manifest, store, prepared.inputs.codec)
    if remote is None:
        return
    prepared.remote = remote
    wanted = [layer for layer in prepared.plan.layers if layer.record is None and layer.key is not None]
    remote.lookup([layer.key for layer in wanted])
    for layer in wanted:
        if remote.has(layer.key):
            layer.source, layer.reason = "remote", f"in the shared cache {remote.settings.repo} (fetched, not built)"


def _build_layer(ctx: BuildContext, layer, progress: Progress, remote: RemoteCache | None = None):
    """The layer's record: from the store (another build made it meanwhile), the shared cache, or built."""
    store = ctx.store
    with store.building(layer.key):
        stored = store.get_layer(layer.key)  # another build may have made it while we waited
        if stored is not None:
            record = store.get_compressed(stored.diff_id, ctx.codec.cache_id)
            if record is not None:
                layer.source = "local"
                return record
        record = remote.fetch(layer.key) if remote is not None else None
        if record is not None:
            layer.source, layer.cached, layer.reason = "remote", True, f"from the shared cache {remote.settings.repo}"
            progress.step(f"layer {layer.step.step}: from the shared cache")
            return record
        progress.step(f"building layer {layer.step.step}: {layer.reason}")
        try:
            record = store_layer(store, ctx.codec, layer.step.make_items(), ctx.epoch)
        except FileChangedError as exc:
            raise BuildError(str(exc)) from None
        finally:
            if layer.step.cleanup is not None:
                layer.step.cleanup()
        store.put_layer(layer.key, record)
        layer.source = "built"
        return record


def _result(prepared: Prepared, image: BuiltImage | None, oci_dir: Path | None, archive: Path | None,
            duration: float, name: str, lock_changed: bool) -> BuildResult:
    base = prepared.ctx.base
    triggers = sorted(prepared.ctx.state.onbuild_report, key=lambda entry: entry["index"])
    layers = [LayerResult("base", None, r.diff_id, r.digest, r.size, True, f"base image {base.description}",
                          source="base") for r in base.layers]
    for layer in prepared.plan.layers:
        record = layer.record
        layers.append(LayerResult(layer.step.step, layer.key, record.diff_id if record else None,
                                  record.digest if record else None, record.size if record else None,
                                  layer.cached, layer.reason, layer.files_read, layer.source))
    remote = prepared.remote.summary() if prepared.remote else None
    return BuildResult(
        manifest_digest=image.manifest_digest if image else None,
        config_digest=image.config_digest if image else None,
        tag=image.tag if image else None,
        oci_layout=str(oci_dir) if oci_dir else None,
        archive=str(archive) if archive else None,
        duration_s=round(duration, 4),
        layers=layers,
        image_name=name,
        lock_changed=lock_changed,
        notes=[onbuild.note(entry) for entry in triggers] + list(prepared.ctx.state.notes)
        + [f"shared cache: {warning}" for warning in (remote or {}).get("warnings", [])],
        onbuild=triggers,
        engine=prepared.ctx.state.engine.summary() if prepared.ctx.state.engine else None,
        cache=remote,
    )


def _record(prepared: Prepared, result: BuildResult, options: BuildOptions, image: BuiltImage, oci_dir: Path) -> None:
    """Remember this build: stat cache, per-step state (for reasons next time), the result, the no-op stamp."""
    prepared.statcache.save()
    state = PreviousBuild({layer.step.step: layer.state() for layer in prepared.plan.layers})
    if state != prepared.previous:
        state.save(prepared.output_dir / "state.json")
    atomic_write_bytes(prepared.output_dir / "build.json",
                       masking.dumps(result.to_json()).encode(), fsync=False)  # watch writes it on every save
    inputs = prepared.inputs
    if inputs.base.floating:  # a registry tag may move: the next build asks the registry again
        (prepared.output_dir / stamp.STAMP).unlink(missing_ok=True)
        return
    extra_paths = [str(inputs.project / MANIFEST_NAME), str(inputs.dockerfile.path), str(inputs.lock_path),
                   str(inputs.project / DOCKERIGNORE_NAME), str(inputs.project / "airflow_settings.yaml"),
                   str(inputs.project / ".env"),  # the DAGs' environment: a change must validate again
                   *inputs.base.source_files,
                   *sorted(str(p) for p in rules_dir().glob("*.yaml"))]
    outputs = [str(oci_dir / "index.json")] + ([result.archive] if result.archive else [])
    blobs = [str(oci_dir / "blobs" / "sha256" / d.removeprefix("sha256:"))
             for d in (image.manifest_digest, image.config_digest, *(r.digest for r in image.layers))]
    stamp.write(prepared.output_dir, prepared.scanned, extra_paths, build_settings(options), result.to_json(),
                outputs, blobs, options.started_ns, own_writes=(str(inputs.lock_path),) if result.lock_changed else ())


def build_settings(options: BuildOptions) -> dict:
    base = f"{options.base.kind}:{options.base.location}" if options.base else None
    settings = stamp.settings(options.project.resolve(), base, options.oci_dir, options.archive, options.locked,
                              options.skip_reason, options.force, options.backend, options.build_args,
                              options.secrets)
    if options.astro_tests and options.validate:  # a deploy's validation runs more than a build's
        settings["astro_tests"] = True
    return settings


def image_name(project: Path, configured: str | None) -> str:
    return configured or default_name(project)


def parse_dags(options: BuildOptions):
    """`airbuild parse`: the environment layers built (or found in the store), then the DAGs imported."""
    with _environment(options) as prepared:
        options.progress.step("importing DAGs in the sandbox")
        return check_dags(prepared.ctx, prepared.plan, astro_tests=True, memory=options.validation_memory,
                          shared=prepared.remote)


def run_tests(options: BuildOptions, pytest_args: list[str], to_stderr: bool = False) -> int:
    """`airbuild test`: the project's tests/ with pytest, in the DAG sandbox; pytest's exit code."""
    with _environment(options) as prepared:
        return run_project_tests(validation_inputs(prepared.ctx, prepared.plan), pytest_args, to_stderr)


def run_dag(options: BuildOptions, dag_id: str, conf: dict, network: bool, timeout_s: float):
    """`airbuild run`: the environment built (cached), then one DAG run in the sandbox."""
    with _environment(options) as prepared:
        options.progress.step(f"running {dag_id} in the sandbox")
        return run_in_sandbox(validation_inputs(prepared.ctx, prepared.plan), dag_id, conf, network, timeout_s)


@contextlib.contextmanager
def _environment(options: BuildOptions):
    """A prepared build whose environment layers (everything but the project's files) are in the store."""
    with project_locked(options.project.resolve()), _prepared(options) as prepared:
        yield prepared


@contextlib.contextmanager
def _prepared(options: BuildOptions):
    store = Store(default_store_dir())
    prepared = None
    try:
        prepared = prepare(options, store)
        layers = prepared.plan.layers
        last = max((i for i, layer in enumerate(layers) if not layer.step.project_content), default=-1)
        for layer in layers[:last + 1]:  # project files under an environment layer (a RUN) are built too
            if layer.record is None:
                layer.record = _build_layer(prepared.ctx, layer, options.progress, prepared.remote)
        if not options.locked:  # what was resolved is pinned, as a build pins it: the next run resolves nothing
            prepared.lock.write(prepared.ctx.project / prepared.ctx.manifest.lockfile)
        yield prepared
        prepared.statcache.save()
    finally:
        _end(prepared, store)
