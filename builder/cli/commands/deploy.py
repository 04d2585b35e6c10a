"""`airbuild deploy`: validate, build, push, tag, record."""

from __future__ import annotations

import json
import sys

from builder.cli.commands.options import EXIT_OK, build_options
from builder.cli.output import human_size
from builder.deploy.deploy import DeployOptions, deploy


def cmd_deploy(args) -> int:
    result = deploy(DeployOptions(
        build=build_options(args), target=args.target, to=args.to, insecure=args.insecure, pytest=args.pytest,
        dags_only=args.dags, description=args.description, ca_bundle=args.ca_bundle))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK

    for warning in result.warnings:
        print(f"airbuild: warning: {warning}", file=sys.stderr)
    if result.validation_skipped:
        print(f"DAGs not validated: parse skipped ({result.validation_skipped})")
    print(f"deployed to {result.target} in {result.duration_s:.2f}s: {result.blobs_uploaded} blob(s) uploaded "
          f"({human_size(result.bytes_uploaded)}), {result.blobs_mounted} mounted, {result.blobs_skipped} already "
          f"there; tags {', '.join(result.tags)}")
    print(result.reference)
    return EXIT_OK
