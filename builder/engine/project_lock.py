"""One build of a project at a time: `.airbuild/` (the image, stamp, state, stat cache) has one writer.

A second build of the same project waits for the first and says so; builds of other projects run
side by side (they share only the store, whose lock is shared by builds).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

from builder.common.atomic import atomic_write_bytes
from builder.common.locks import hold
from builder.common.paths import OUTPUT_DIR

LOCK_NAME = "build.lock"


def ensure_output_dir(path: Path) -> None:
    path.mkdir(exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        atomic_write_bytes(ignore, b"# airbuild's outputs and caches: never commit them\n*\n", fsync=False)


@contextlib.contextmanager
def project_locked(project: Path) -> Iterator[None]:
    """Hold the project's `.airbuild/build.lock` (nothing for a path that is not a directory: the build says why)."""
    if not project.is_dir():
        yield
        return
    output = project / OUTPUT_DIR
    ensure_output_dir(output)

    def waiting() -> None:
        print(f"airbuild: another build of {project} is running; waiting for it to finish", file=sys.stderr,
              flush=True)

    with hold(output / LOCK_NAME, on_wait=waiting):
        yield
