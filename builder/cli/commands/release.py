"""`airbuild sbom` and `provenance`: the documents that go with the image this project builds."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from builder.attest.dsse import load_signing_key
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


def _check_output(output: Path | None) -> None:
    """-o is checked before anything is built."""
    if output is None:
        return
    if output.is_dir():
        raise InputError("-o names a directory; give a file", path=output)
    if not output.parent.is_dir():
        raise InputError(f"-o: no directory {output.parent} to write into", path=output)


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(data.decode())  # through the masking stream, as everything printed
        sys.stdout.flush()
        return
    atomic_write_bytes(output, data)  # never half-written
    print(f"wrote {output} ({human_size(len(data))})", file=sys.stderr)


def cmd_sbom(args) -> int:
    _check_output(args.output)
    result = _build(args)
    _emit(sbom(args.project.resolve(), ImageId(result.image_name, result.manifest_digest), args.format), args.output)
    return EXIT_OK


def cmd_provenance(args) -> int:
    _check_output(args.output)
    if args.sign_key is not None:
        load_signing_key(args.sign_key)  # a bad key fails before the build
    options = _options(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = build(options)
    finished = datetime.datetime.now(datetime.timezone.utc)
    git = git_state(args.project.resolve())
    run = build_run(options, ImageId(result.image_name, result.manifest_digest), git.commit, bool(git.dirty),
                    started, finished)
    _emit(provenance(run, args.sign_key).data, args.output)
    return EXIT_OK
