"""The image name a project gets when astro.yaml names none: its directory's name, made a valid name."""

from __future__ import annotations

import re
from pathlib import Path


def default_name(project: Path) -> str:
    """Lower-case letters, digits, '.', '_', '-' from the directory's name (else `airflow-project`)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", project.name.lower()).strip("-._")
    return name or "airflow-project"
