"""What every command shares: the build options its arguments mean, and its exit codes."""

from __future__ import annotations

from builder.cli.parser import build_args, validation_skipped
from builder.common.progress import Progress, configure
from builder.engine.build import BuildOptions
from builder.project.manifest import BaseSource


EXIT_OK, EXIT_FAILED = 0, 1


def build_options(args) -> BuildOptions:
    configure(json_output=bool(getattr(args, "json", False)))
    skipped = validation_skipped(args)
    return BuildOptions(
        project=args.project,
        oci_dir=getattr(args, "oci", None),
        archive=getattr(args, "archive", None),
        locked=getattr(args, "locked", False),
        upgrade=True if getattr(args, "upgrade", False) else frozenset(getattr(args, "upgrade_package", []) or []) or False,
        base=BaseSource.parse(args.base) if args.base else None,
        validate=skipped is None,
        validation_skipped=skipped,
        force=getattr(args, "force", False),
        progress=Progress(None if not args.json else False),
        backend=getattr(args, "backend", None),
        build_args=build_args(getattr(args, "build_arg", [])),
        secrets=tuple(getattr(args, "secret", [])),
        sandbox=getattr(args, "sandbox", None),
        validation_workers=getattr(args, "workers", None),
        env_file=getattr(args, "env_file", None),
        cache_repo=getattr(args, "cache_repo", None),
        cache_required=getattr(args, "cache_required", False),
    )
