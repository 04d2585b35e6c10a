"""`airbuild deploy`: validate, build, ship (a registry, or an Astro Deployment), record."""

from __future__ import annotations

import json
import sys

from builder.cli.commands.options import EXIT_OK, build_options
from builder.cli.output import human_size
from builder.deploy.deploy import DeployOptions, deploy


def cmd_deploy(args) -> int:
    result = deploy(DeployOptions(
        build=build_options(args), target=args.target, to=args.to, astro=args.astro, insecure=args.insecure,
        pytest=args.pytest, dags_only=args.dags, description=args.description, ca_bundle=args.ca_bundle,
        attest=args.attest, sign_key=args.sign_key))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK

    for warning in result.warnings:
        print(f"airbuild: warning: {warning}", file=sys.stderr)
    if result.validation_skipped:
        print(f"DAGs not validated: parse skipped ({result.validation_skipped})")
    pushed = (f"{result.blobs_uploaded} blob(s) uploaded ({human_size(result.bytes_uploaded)}), "
              f"{result.blobs_mounted} mounted, {result.blobs_skipped} already there; tags {', '.join(result.tags)}")
    astro = result.astro
    if astro is None:
        print(f"deployed to {result.target} in {result.duration_s:.2f}s: {pushed}")
        if result.attestations:
            print(f"  attached {', '.join(a['artifactType'] for a in result.attestations)} as referrers "
                  f"({human_size(result.attestation_bytes)} sent)")
        print(result.reference)
        return EXIT_OK
    print(f"deployed to Astro Deployment {astro['deployment']} in {result.duration_s:.2f}s: {astro['deploy_type']} "
          f"deploy {astro['deploy_id']} ({astro['status'] or 'finalized'}), {human_size(result.bytes_uploaded)} sent")
    if astro["image_digest"]:
        print(f"  image   {astro['image_repository']}:{astro['image_tag']}  {astro['image_digest']}  ({pushed})")
    if astro["bundle_sha256"]:
        print(f"  DAGs    bundle version {astro['dag_tarball_version']}  sha256:{astro['bundle_sha256']}  "
              f"({astro['bundle_files']} files, {human_size(astro['bundle_bytes'])})")
    if result.reference:
        print(result.reference)
    return EXIT_OK
