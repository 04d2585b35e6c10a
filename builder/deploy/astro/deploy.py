"""`airbuild deploy` to an Astro Deployment, end to end, through Astro's Deploy API.

The deploy type is chosen as Astro's own CLI chooses it:
- `--dags`: DAG_ONLY (the Deployment must have DAG deploys enabled): the DAG bundle, no image;
- a Deployment with DAG deploys enabled: IMAGE_AND_DAG: the image without its DAG layer (Astro serves
  the DAGs from the bundle, so a later DAG-only deploy needs no image), and the bundle;
- else IMAGE_ONLY: the image with its DAGs.

In order: the gates (git, compile); the Deployment read (a bad token or an unknown Deployment fails
here); --pytest; the build with its DAG validation (for DAG_ONLY: the DAG layer alone, validated
against the Deployment's current image); the bundle written. Only then is anything created on Astro:
the deploy, the image pushed to the repository and tag the deploy names (and tagged deploy-<digest>),
the bundle uploaded, and the deploy finalized, only once the push and the upload succeeded. A failure
says what state the deploy was left in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.common.errors import AirbuildError, BuildError, InputError
from builder.common.paths import default_store_dir
from builder.deploy import dag_layer, gates
from builder.deploy import records as deploy_record
from builder.deploy.astro import images
from builder.deploy.astro.api import AstroAPI, Deploy, Deployment
from builder.deploy.astro.bundle import Bundle, write_bundle
from builder.deploy.astro.settings import AstroSettings, settings_for
from builder.deploy.image_edit import drop_layers
from builder.deploy.options import DeployOptions, DeployResult
from builder.engine.build import BuildOptions, Prepared, build, epoch_from_env, prepare
from builder.engine.rules import rule_list
from builder.oci.image import BuiltImage
from builder.project.manifest import AstroTarget, load_manifest
from builder.registry.pull import Puller
from builder.registry.push import Pusher, PushStats
from builder.registry.reference import Reference
from builder.store.store import Store
from builder.validate.run import ValidationInputs

IMAGE_AND_DAG, IMAGE_ONLY, DAG_ONLY = "IMAGE_AND_DAG", "IMAGE_ONLY", "DAG_ONLY"


class AstroDeployFailed(AirbuildError):
    """A step failed; the message says which, with the API's words, and where the deploy was left."""

    def __init__(self, message: str, exit_code: int):
        self.exit_code = exit_code
        super().__init__(message)


@dataclass
class Shipment:
    """What goes to Astro, all of it made and checked before anything is created there."""

    image: str | None            # the manifest digest to push (in the store); None for DAG_ONLY
    bundle: Bundle | None        # None for IMAGE_ONLY


@contextlib.contextmanager
def _left(state: Callable[[], str]):
    """Errors of the steps inside carry where the deploy was left."""
    try:
        yield
    except gates.DeployRefused:
        raise
    except AirbuildError as exc:
        if getattr(exc, "report", None) is not None:  # DAG validation: its report is printed as it is
            raise
        raise AstroDeployFailed(f"{exc.render()}; {state()}", exc.exit_code) from None


def deploy_type(deployment: Deployment, dags_only: bool) -> str:
    if dags_only:
        if not deployment.dag_deploy_enabled:
            raise InputError(f"--dags: DAG-only deploys are not enabled on Deployment {deployment.id}: enable them "
                             f"(astro deployment update {deployment.id} --dag-deploy enable) or deploy the image "
                             "(without --dags)")
        return DAG_ONLY
    return IMAGE_AND_DAG if deployment.dag_deploy_enabled else IMAGE_ONLY


def deploy_to_astro(options: DeployOptions, name: str, target: AstroTarget) -> DeployResult:
    started = time.monotonic()
    project = options.build.project.resolve()
    build_options = dataclasses.replace(options.build, project=project, astro_tests=True)  # as astro deploy parses
    progress = build_options.progress
    settings = settings_for(target)
    warnings: list[str] = []
    git = gates.check_tree(project, build_options.force, options.allow_dirty, warnings, progress)
    description = options.description if options.description is not None else git.message
    created: Deploy | None = None
    pushed: str | None = None
    version: str | None = None

    def state() -> str:
        if created is None:
            return "nothing was created on Astro"
        done = [f"the image was pushed as {pushed}"] if pushed else []
        done += [f"the DAG bundle was uploaded as version {version}"] if version else []
        return (f"Astro deploy {created.id} ({created.type}) was created and is not finalized"
                + (f" ({'; '.join(done)})" if done else "") + ": the Deployment still runs what it ran before")

    with AstroAPI(settings, options.ca_bundle) as api, _left(state):
        progress.step(f"reading Astro Deployment {settings.deployment}")
        deployment = api.deployment()
        kind = deploy_type(deployment, options.dags_only)
        if options.pytest:
            gates.check_tests(build_options, warnings)
        store = Store(default_store_dir())
        try:
            shipment = _prepare(build_options, store, settings, deployment, kind, warnings, options.ca_bundle)
            progress.step(f"creating a {kind} deploy on {settings.deployment}")
            created = api.create_deploy(kind, description)
            stats = PushStats()
            repo, tags = None, []
            if shipment.image is not None:
                repo = images.repository(created.image_repository)
                tags = [BuiltImage(shipment.image, 0, "", ()).tag, images.checked_tag(created.image_tag)]
                progress.step(f"pushing to {repo.name}:{tags[-1]}")
                with images.client(settings, repo, options.ca_bundle) as client:
                    stats = Pusher(client, store, repo.repository).push(shipment.image, tags)
                pushed = f"{repo.name}:{tags[-1]}"
            if shipment.bundle is not None:
                if not created.dags_upload_url:
                    raise BuildError(f"Astro created deploy {created.id} ({kind}) without a dagsUploadUrl")
                progress.step("uploading the DAG bundle")
                version = api.upload_bundle(created.dags_upload_url, store.blob_path(shipment.bundle.digest))
        finally:
            store.close()
        progress.step(f"finalizing deploy {created.id}")
        final = api.finalize(created.id, version if shipment.bundle is not None else None)

    astro = {"deployment": settings.deployment, "organization": settings.organization, "deploy_id": created.id,
             "deploy_type": kind, "status": final.status or None, "runtime_version": deployment.runtime_version,
             "dag_deploy_enabled": deployment.dag_deploy_enabled,
             "image_repository": repo.name if repo else None, "image_tag": tags[-1] if tags else None,
             "image_digest": shipment.image, "dag_tarball_version": version,
             "bundle_sha256": shipment.bundle.sha256 if shipment.bundle else None,
             "bundle_bytes": shipment.bundle.size if shipment.bundle else None,
             "bundle_files": shipment.bundle.files if shipment.bundle else None}
    sent = stats.bytes_uploaded + (shipment.bundle.size if shipment.bundle else 0)
    reference = f"{repo.name}@{shipment.image}" if repo else None
    outcome = DeployResult(
        target=name, reference=reference, manifest_digest=shipment.image, tag=tags[0] if tags else None,
        blobs_uploaded=stats.blobs_uploaded, blobs_skipped=stats.blobs_skipped, blobs_mounted=stats.blobs_mounted,
        bytes_uploaded=sent, duration_s=round(time.monotonic() - started, 4), tags=tags,
        dags_only=kind == DAG_ONLY, git_commit=git.commit, description=description, warnings=warnings,
        validation_skipped=build_options.skip_reason, astro=astro)
    deploy_record.append(project, {
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": name, "registry": repo.name if repo else None, "reference": reference,
        "digest": shipment.image, "tag": outcome.tag, "tags": tags, "git_commit": git.commit,
        "description": description, "bytes_uploaded": sent, "blobs_uploaded": stats.blobs_uploaded,
        "dags_only": outcome.dags_only, "forced": bool(warnings) and build_options.force, "astro": astro})
    return outcome


# -- what is shipped ----------------------------------------------------------------------------

def _prepare(options: BuildOptions, store: Store, settings: AstroSettings, deployment: Deployment, kind: str,
             warnings: list[str], ca_bundle: Path | None) -> Shipment:
    """The image and the bundle in the store, the DAGs validated (refused unless --force)."""
    manifest, manifest_path = load_manifest(options.project)
    if kind != IMAGE_ONLY and dag_layer.DAGS_RULE not in {rule.name for rule in rule_list(manifest, manifest_path)}:
        raise InputError(f"{kind} needs the `{dag_layer.DAGS_RULE}` rule: Astro serves the DAGs of a Deployment "
                         "with DAG deploys enabled from a bundle made from that rule's layer, and this project's "
                         "`layers` have none", path=manifest_path)
    if kind == DAG_ONLY:
        return _dags_only(options, store, settings, deployment, warnings, ca_bundle)
    result = build(options)  # validates the DAGs in the sandbox; refuses unless --force
    if result.lock_changed:
        warnings.append("astro.lock changed (the base moved): commit it")
    if result.validation and result.validation["status"] == "failed":
        warnings.append("DAG validation failed (deployed with --force)")
    if kind == IMAGE_ONLY:
        return Shipment(result.manifest_digest, None)
    image, layers = drop_layers(store, result.manifest_digest, dag_layer.DAGS_RULE)
    return Shipment(image, _bundle(store, layers, manifest.workdir, epoch_from_env(), warnings))


def _dags_only(options: BuildOptions, store: Store, settings: AstroSettings, deployment: Deployment,
               warnings: list[str], ca_bundle: Path | None) -> Shipment:
    prepared = prepare(options, store)
    planned = dag_layer.dag_layers(prepared)
    environment = _current_environment(prepared, store, settings, deployment, warnings, ca_bundle) \
        if options.validate else None
    records = dag_layer.build_checked(options, prepared, planned, environment)
    return Shipment(None, _bundle(store, records, prepared.ctx.manifest.workdir, prepared.ctx.epoch, warnings))


def _bundle(store: Store, layers: list, workdir: str, epoch: int, warnings: list[str]) -> Bundle:
    bundle = write_bundle(store, layers, workdir, epoch)
    if bundle.files == 0:
        warnings.append("dags/ has no files: the DAG bundle is empty, and the Deployment will run no DAGs")
    return bundle


def _current_environment(prepared: Prepared, store: Store, settings: AstroSettings, deployment: Deployment,
                         warnings: list[str], ca_bundle: Path | None) -> ValidationInputs | None:
    """The environment of the image the Deployment runs, for the new DAGs to be imported against."""
    if not deployment.image_repository or not deployment.image_tag:
        warnings.append(f"Deployment {deployment.id} names no current image: the DAGs were validated against this "
                        "checkout's environment")
        return None
    repo = images.repository(deployment.image_repository)
    current = Reference(repo.registry, repo.repository, images.checked_tag(deployment.image_tag))
    with images.client(settings, repo, ca_bundle) as client:
        puller = Puller(client, store)
        remote = puller.pull(current, prepared.ctx.platform, layers=False)
        return dag_layer.remote_environment(prepared, puller, current, remote)
