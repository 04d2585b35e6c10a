"""Shipping a built image: to a registry (push what it lacks, tag) or to an Astro Deployment; records.

Meets the engine only at the image. Public: `deploy` (deploy, choose_target), `options`
(DeployOptions, DeployResult), `records` (.airbuild/deploys.jsonl: append, read). Inside: `gates`
(git, compile and test checks before a build), `to_registry`, `astro/` (Astro's Deploy API),
`image_edit` (an image with one rule's layer replaced or taken out), `dag_layer` (a DAG-only
deploy's layer, validated against the deployed image's environment), `attestations` (the SBOMs and
provenance of a built image, attached to it as referrers), `promote` (an image copied by digest).

Checking what was shipped: `verify` (the commit rebuilt as its lock pins it, in a fresh store, compared
with a shipped image; `checkout` exports the commit, `reference_image` reads the shipped one), `drift`
(`history --verify`: recorded tags that moved or were deleted).
"""
