"""A deploy to a registry: build (validating the DAGs), push what the registry lacks, tag, record.

Tags: the reproducible deploy-<digest> first, then the target's `tags`. `--dags` replaces only the
DAG layer of the target's current image (the target's first tag, else the last deploy recorded
here) and pushes that one layer, the config and the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from pathlib import Path

from builder.common.errors import InputError
from builder.common.paths import default_store_dir
from builder.attest.dsse import load_signing_key
from builder.deploy import dag_layer, gates
from builder.deploy import records as deploy_record
from builder.deploy.image_edit import splice_layers
from builder.deploy.options import DeployOptions, DeployResult
from builder.engine.build import BuildOptions, build, prepare, up_to_date
from builder.oci.image import BuiltImage
from builder.project.manifest import Target
from builder.registry import docker_config
from builder.registry.connect import open_client
from builder.registry.pull import Puller
from builder.registry.push import Pusher
from builder.registry.reference import Reference, parse_reference, parse_repository
from builder.store.store import Store


def deploy_to_registry(options: DeployOptions, name: str, target: Target) -> DeployResult:
    started = time.monotonic()
    project = options.build.project.resolve()
    build_options = dataclasses.replace(options.build, project=project, astro_tests=True)  # as astro deploy parses
    force, progress = build_options.force, build_options.progress
    repo = parse_repository(target.registry)
    warnings: list[str] = []

    # A --dags image keeps the deployed image's packages, which this checkout's lock need not describe.
    attest = options.attest and target.attest and not options.dags_only
    if attest and options.sign_key is not None:
        load_signing_key(options.sign_key)  # a bad key fails now, not after the push
    git = gates.check_tree(project, force, options.allow_dirty, warnings, progress)
    description = options.description if options.description is not None else git.message
    # CI credentials in AIRBUILD_REGISTRY_* are for the target; a base pulled from the same registry uses them too.
    os.environ.setdefault(docker_config.ENV_REGISTRY, repo.registry)
    if options.pytest:
        gates.check_tests(build_options, warnings)
    with open_client(repo.registry, insecure=target.insecure, ca_bundle=options.ca_bundle,
                     env_registry=repo.registry) as client:
        store = Store(default_store_dir())
        try:
            build_started = datetime.datetime.now(datetime.timezone.utc)
            if options.dags_only:
                manifest_digest = _dags_only_image(build_options, store, client, repo, name, target)
            else:
                # validates the DAGs in the sandbox (refuses unless --force), unless the last build's stamp proves
                # that nothing it read has changed since
                result = up_to_date(build_options, store) or build(build_options)
                manifest_digest = result.manifest_digest
                if result.lock_changed:
                    warnings.append("astro.lock changed (the base moved): commit it")
                if result.validation and result.validation["status"] == "failed":
                    warnings.append("DAG validation failed (deployed with --force)")
            build_finished = datetime.datetime.now(datetime.timezone.utc)
            tag = BuiltImage(manifest_digest, 0, "", ()).tag
            tags = [tag] + [t for t in target.tags if t != tag]
            progress.step(f"pushing to {repo.name}")
            stats = Pusher(client, store, repo.repository).push(manifest_digest, tags)
            attestations, attestation_bytes = [], 0
            if attest:
                # spdx-tools, cyclonedx and protobuf take about a second to import: only for a deploy that attaches
                from builder.deploy.attestations import attach_all

                progress.step("attaching the SBOMs (SPDX, CycloneDX) and the provenance as referrers")
                attestations, attestation_bytes = attach_all(
                    client, store, repo.repository, build_options, manifest_digest, git.commit, bool(git.dirty),
                    build_started, build_finished, options.sign_key)
        finally:
            store.close()

    reference = f"{repo.name}@{manifest_digest}"
    outcome = DeployResult(
        target=name, reference=reference, manifest_digest=manifest_digest, tag=tag,
        blobs_uploaded=stats.blobs_uploaded, blobs_skipped=stats.blobs_skipped, blobs_mounted=stats.blobs_mounted,
        bytes_uploaded=stats.bytes_uploaded, duration_s=round(time.monotonic() - started, 4), tags=tags,
        dags_only=options.dags_only, git_commit=git.commit, description=description, warnings=warnings,
        validation_skipped=build_options.skip_reason, attestations=attestations,
        attestation_bytes=attestation_bytes)
    deploy_record.append(project, {
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": name, "registry": target.registry, "reference": reference, "digest": manifest_digest,
        "tag": tag, "tags": tags, "git_commit": git.commit, "description": description,
        "bytes_uploaded": stats.bytes_uploaded, "blobs_uploaded": stats.blobs_uploaded,
        "dags_only": options.dags_only, "forced": bool(warnings) and force,
        "attestations": [{k: a[k] for k in ("artifactType", "digest", "size")} for a in attestations],
        "attestation_bytes": attestation_bytes})
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
    puller = Puller(client, store)
    remote = puller.pull(current, prepared.ctx.platform, layers=False)
    layers = dag_layer.some_dag_layers(prepared)
    environment = dag_layer.remote_environment(prepared, puller, current, remote) if options.validate else None
    records = dag_layer.build_checked(options, prepared, layers, environment)
    return splice_layers(store, remote.manifest, json.loads(remote.config_bytes),
                         [(record, layer.step.created_by) for record, layer in zip(records, layers)], current,
                         dag_layer.DAGS_RULE)
