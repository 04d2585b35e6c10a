"""`airbuild sbom` and `provenance`: the documents that go with the image this project builds."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from builder.cli.commands.options import EXIT_OK
from builder.cli.output import human_size
from builder.common.atomic import atomic_write_bytes
from builder.common.errors import InputError
from builder.common.progress import Progress
from builder.deploy.attestations import ImageId, build_run, provenance, sbom
from builder.deploy.gates import git_state
from builder.engine.build import BuildOptions, BuildResult, build
from builder.project.manifest import BaseSource


def _build(args) -> BuildResult:
    """The image the project builds (from the store when unchanged); DAGs are not imported: no document
    depends on them."""
    options = _options(args)
    return build(options)


def _options(args) -> BuildOptions:
    return BuildOptions(project=args.project, locked=args.locked, progress=Progress(None),
                        base=BaseSource.parse(args.base) if args.base else None, validate=False,
                        validation_skipped="not needed for this document")


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(data.decode())  # through the masking stream, as everything printed
        sys.stdout.flush()
        return
    if output.is_dir():
        raise InputError("-o names a directory; give a file", path=output)
    atomic_write_bytes(output, data)  # never half-written
    print(f"wrote {output} ({human_size(len(data))})", file=sys.stderr)


def cmd_sbom(args) -> int:
    result = _build(args)
    _emit(sbom(args.project.resolve(), ImageId(result.image_name, result.manifest_digest), args.format), args.output)
    return EXIT_OK


def cmd_provenance(args) -> int:
    if args.sign_key is not None and not args.sign_key.is_file():
        raise InputError("--sign-key: no such file", path=args.sign_key)
    options = _options(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = build(options)
    finished = datetime.datetime.now(datetime.timezone.utc)
    git = git_state(args.project.resolve())
    run = build_run(options, ImageId(result.image_name, result.manifest_digest), git.commit, bool(git.dirty),
                    started, finished)
    _emit(provenance(run, args.sign_key).data, args.output)
    return EXIT_OK
