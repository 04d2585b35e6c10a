"""A DAG-only deploy's new layers: the `dags` rule's layers (one, or several when it splits the DAGs) built alone, its DAGs imported against the
environment of the image they will run in (the deployed image's layers below the project's and its
config's `Env`, not this checkout's), refused unless --force when they fail.
"""

from __future__ import annotations

import dataclasses
import json

from builder.common.errors import InputError
from builder.engine.build import BuildOptions, Prepared, _build_layer
from builder.engine.gate import ValidationFailed, check_dags, validation_inputs
from builder.engine.plan import PlannedLayer
from builder.oci.config import ContainerConfig
from builder.registry.pull import PulledImage, Puller
from builder.registry.reference import Reference
from builder.store.store import LayerRecord
from builder.validate.run import ValidationInputs

DAGS_RULE = "dags"


def dag_layers(prepared: Prepared) -> list[PlannedLayer]:
    """The layers the `dags` rule makes in this project's plan (none when dags/ has no files)."""
    return [layer for layer in prepared.plan.layers if layer.step.rule == DAGS_RULE]


def build_checked(options: BuildOptions, prepared: Prepared, layers: list[PlannedLayer],
                  environment: ValidationInputs | None) -> list[LayerRecord]:
    """`layers` built (or found in the store) once their DAGs import against `environment` (None: this checkout's)."""
    for layer in layers:
        if layer.record is None:
            layer.record = _build_layer(prepared.ctx, layer, options.progress)
    if options.validate:
        options.progress.step("importing DAGs in the sandbox")
        report = check_dags(prepared.ctx, prepared.plan, environment, astro_tests=options.astro_tests)
        if report.failed and not options.force:
            raise ValidationFailed(report)
    prepared.statcache.save()
    return [layer.record for layer in layers]


def some_dag_layers(prepared: Prepared) -> list[PlannedLayer]:
    planned = dag_layers(prepared)
    if not planned:
        raise InputError(f"--dags needs a layer from the `{DAGS_RULE}` rule; this project's rules make none")
    return planned


def remote_environment(prepared: Prepared, puller: Puller, current: Reference, remote: PulledImage) -> ValidationInputs:
    """What the new DAGs will be imported against once deployed: the image's own layers but the project's
    (its environment, which may differ from this checkout's), and its config's Env."""
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
