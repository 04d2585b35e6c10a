"""`airbuild init [DIR]`: a new Astro-layout project that builds, parses and tests as written.

The files come from templates/init/ (in the wheel: airbuild_templates/init/); names there carry no
leading dot (package data globs skip hidden files), so `FILES` says where each one goes, and a
`.j2` template is rendered with the project's name. Nothing is overwritten: if any file exists
already, nothing is written and the error names them (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.common.atomic import atomic_write_bytes
from builder.common.errors import InputError
from builder.project.naming import default_name
from builder.common.resources import data_dir

# template (under templates/init/) -> path in the project
FILES = {
    "Dockerfile": "Dockerfile",
    "requirements.txt": "requirements.txt",
    "packages.txt": "packages.txt",
    "astro.yaml.j2": "astro.yaml",
    "dockerignore": ".dockerignore",
    "gitignore": ".gitignore",
    "env": ".env",
    "airflow_settings.yaml": "airflow_settings.yaml",
    "dags/example_etl.py": "dags/example_etl.py",
    "tests/dags/test_dag_example.py": "tests/dags/test_dag_example.py",
    "astro/config.yaml.j2": ".astro/config.yaml",
    "astro/test_dag_integrity_default.py": ".astro/test_dag_integrity_default.py",
}
DIRECTORIES = ("include", "plugins")


@dataclass(frozen=True)
class Initialised:
    project: Path
    name: str
    files: tuple[str, ...]

    def to_json(self) -> dict:
        return {"project": str(self.project), "name": self.name, "files": list(self.files)}


def init_project(directory: Path, name: str | None = None) -> Initialised:
    import jinja2  # only for `airbuild init` (~20 ms)

    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory")
    name = name or default_name(directory)
    if not re.match(r"^[a-z0-9][a-z0-9._-]*$", name):
        raise InputError(f"--name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
    existing = sorted(dest for dest in FILES.values() if (directory / dest).exists() or (directory / dest).is_symlink())
    if existing:
        raise InputError(f"{directory} already has {', '.join(existing)}: airbuild init overwrites nothing (remove "
                         "them, or init another directory)")
    templates = data_dir("templates") / "init"
    for template, dest in FILES.items():
        text = (templates / template).read_text()
        if template.endswith(".j2"):
            text = jinja2.Template(text, keep_trailing_newline=True).render(name=name)
        target = directory / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, text.encode(), fsync=False)
    for sub in DIRECTORIES:
        (directory / sub).mkdir(exist_ok=True)
    return Initialised(directory, name, tuple(FILES.values()))
