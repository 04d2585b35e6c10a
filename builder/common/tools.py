"""Where the programs airbuild runs that ship as its Python dependencies are (today: uv).

airbuild is often run from a virtual environment it was installed into without that
environment's bin/ on PATH (`pipx`, `uv tool install`, CI images, IDE run configurations).
So a dependency's program is looked for through its own package first, then next to the
interpreter running airbuild, and only then on PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from builder.common.errors import SetupError


def uv() -> str:
    """The uv binary of the uv package airbuild depends on."""
    try:
        from uv import find_uv_bin  # the uv package: only when a resolution or an install needs uv

        return find_uv_bin()
    except (ImportError, FileNotFoundError):  # uv.UvNotFound is a FileNotFoundError
        pass
    return beside_interpreter("uv") or _on_path("uv", "uv (the `uv` Python package airbuild depends on)")


def beside_interpreter(name: str) -> str | None:
    """`name` in the directory of the running interpreter (a virtual environment's bin/)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _on_path(name: str, what: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SetupError(f"{what} is not installed where airbuild runs ({sys.executable}): reinstall airbuild "
                         f"with its dependencies (e.g. `pipx install --force airbuild`)")
    return found
