"""`airbuild promote`: an image copied by digest, with its referrers, to another repository or registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from builder.cli.commands.options import EXIT_OK
from builder.cli.output import human_size
from builder.common.errors import InputError
from builder.common.progress import Progress
from builder.deploy.promote import PromoteOptions, promote
from builder.project.discover import find_project


def cmd_promote(args) -> int:
    project = args.promote_project
    if project is None:
        try:
            project = find_project(Path.cwd())
        except InputError:
            project = None  # not in a project: nothing to record the promotion in
    result = promote(PromoteOptions(source=args.source, to=args.to, tags=args.tag, digest=args.digest,
                                    insecure=args.insecure, ca_bundle=args.ca_bundle, project=project,
                                    progress=Progress(None if not args.json else False)))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK
    print(f"promoted {result.source} in {result.duration_s:.2f}s: {result.blobs_copied} blob(s) copied "
          f"({human_size(result.bytes_copied)}), {result.blobs_mounted} mounted, {result.blobs_skipped} already "
          f"there; {len(result.referrers)} referrer(s); tags {', '.join(result.tags)}")
    if result.recorded is None:
        print("not recorded: not run in a project (give --project DIR to record it)", file=sys.stderr)
    print(result.reference)
    return EXIT_OK
