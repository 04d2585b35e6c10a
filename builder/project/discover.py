"""Which project a command works on when none is named: the nearest directory up that is one.

As git and astro do, a command run from `dags/` or any directory below the project works on
the project: the nearest directory (this one or a parent) with an `astro.yaml`, or with both a
`Dockerfile` and a `dags/` directory. A project named on the command line is taken as given.
"""

from __future__ import annotations

from pathlib import Path

from builder.common.errors import InputError
from builder.common.paths import MANIFEST_NAME


def is_project(directory: Path) -> bool:
    return (directory / MANIFEST_NAME).is_file() or \
        ((directory / "Dockerfile").is_file() and (directory / "dags").is_dir())


def find_project(start: Path) -> Path:
    start = start.resolve()
    for directory in (start, *start.parents):
        if is_project(directory):
            return directory
    raise InputError(f"{start} is not in an Airflow project: no directory from here up has an {MANIFEST_NAME}, or "
                     "a Dockerfile and a dags/ directory. Run airbuild from a project, name one (airbuild build "
                     "DIR), or create one with `airbuild init DIR`")
