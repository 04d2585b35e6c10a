"""`airbuild watch`."""

from __future__ import annotations

from builder.cli.commands.options import build_options
from builder.watch import WatchOptions, watch


def cmd_watch(args) -> int:
    return watch(args.project, WatchOptions(build_options=lambda: build_options(args), load=args.load,
                                            deploy_target=args.deploy, json_lines=args.json))
