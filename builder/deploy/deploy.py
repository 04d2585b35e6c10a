"""`airbuild deploy`: the target chosen, then the deploy made by the stage that ships there.

A registry target (`registry:`, `--to HOST/REPO`): `to_registry`. An Astro Deployment (`astro:`,
`--astro DEPLOYMENT_ID`): `astro.deploy`, through Astro's Deploy API. Both run the same gates first
(`gates`) and append to the same records (`records`).
"""

from __future__ import annotations

from builder.common.errors import InputError
from builder.deploy.astro.deploy import deploy_to_astro
from builder.deploy.astro.settings import astro_target
from builder.deploy.options import DeployOptions, DeployResult
from builder.deploy.to_registry import deploy_to_registry
from builder.project.manifest import Manifest, Target, load_manifest
from builder.registry.reference import parse_repository

__all__ = ["DeployOptions", "DeployResult", "choose_target", "deploy"]


def choose_target(manifest: Manifest, name: str | None, to: str | None, insecure: bool,
                  astro: str | None = None) -> tuple[str, Target]:
    if sum(1 for given in (name, to, astro) if given) > 1:
        raise InputError("give one of --target, --to and --astro")
    if to:
        parse_repository(to)
        return to, Target(registry=to, insecure=insecure)
    if astro:
        return f"astro:{astro}", Target(astro=astro_target(astro))
    targets = manifest.targets
    if name:
        if name not in targets:
            raise InputError(f"no target {name!r} in astro.yaml; targets: {', '.join(sorted(targets)) or 'none'}")
        return name, targets[name]
    if len(targets) == 1:
        return next(iter(targets.items()))
    if not targets:
        raise InputError("nowhere to deploy: add `targets:` to astro.yaml (e.g. targets: {prod: {registry: "
                         "host/repo}} or {prod: {astro: {deployment: ID}}}), or give --to host/repo or --astro ID")
    raise InputError(f"astro.yaml has {len(targets)} targets ({', '.join(sorted(targets))}); choose one with --target")


def deploy(options: DeployOptions) -> DeployResult:
    project = options.build.project.resolve()
    manifest, _ = load_manifest(project)
    name, target = choose_target(manifest, options.target, options.to, options.insecure, options.astro)
    if target.astro is not None:
        return deploy_to_astro(options, name, target.astro)
    return deploy_to_registry(options, name, target)
