"""Build secrets for `RUN --mount=type=secret`: handed to BuildKit as files, never put in a key or a layer.

A secret is a file (`src`, relative to the project in astro.yaml) or an environment variable
(`env`, written to a private temporary file for the engine and removed right after).
A secret file the project's build context would copy into the image is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from builder.common import masking
from builder.common.errors import InputError
from builder.actions.steps import BuildContext


def secret_path(ctx: BuildContext, src: str) -> Path:
    return (ctx.project / src).resolve()


def check_secrets(ctx: BuildContext) -> None:
    """Refuse a secret file that a layer of project files would copy into the image."""
    for spec in ctx.secrets:
        if spec.src is None:
            continue
        path = secret_path(ctx, spec.src)
        try:
            relative = path.relative_to(ctx.project).as_posix()
        except ValueError:
            continue
        if relative in ctx.tree.entries:
            raise InputError(f"secret {spec.id!r}: {relative} is part of the project's build context, so a layer of "
                             "project files would put it in the image; keep it outside the project or list it in "
                             ".dockerignore")


@contextlib.contextmanager
def engine_secrets(ctx: BuildContext) -> Iterator[list[str]]:
    """`--secret` values for the engine (`id=ID,src=FILE`); files made for `env` secrets (in a private
    temporary directory, outside the store) are removed after."""
    values = []
    directory = Path(tempfile.mkdtemp(prefix="airbuild-secrets-"))  # mode 0700
    try:
        for spec in ctx.secrets:
            if spec.src is not None:
                path = secret_path(ctx, spec.src)
                if not path.is_file():
                    raise InputError(f"secret {spec.id!r}: no such file {path}")
                _mask_file(path)
            else:
                value = os.environ.get(spec.env)
                if value is None:
                    raise InputError(f"secret {spec.id!r}: the environment variable {spec.env} is not set")
                masking.add(value)
                path = directory / spec.id
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(value)
            values.append(f"id={spec.id},src={path}")
        yield values
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _mask_file(path: Path) -> None:
    """A secret file's content, whole and line by line, masked in what airbuild prints (a RUN may echo it)."""
    if path.stat().st_size > 64 << 10:
        return
    content = path.read_text(errors="replace")
    for secret in (content, content.strip(), *content.splitlines()):
        masking.add(secret.strip())
