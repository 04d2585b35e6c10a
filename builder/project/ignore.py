"""`.dockerignore` with Docker's semantics (moby/patternmatcher), plus Astro's defaults.

- One pattern a line; `#` comments; leading `/` and `./` dropped; paths cleaned.
- `*` and `?` never cross `/`; `**` matches any number of directories.
- A pattern that matches a directory matches everything under it.
- The last matching pattern wins; `!` makes it an exception (re-include).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from builder.common.errors import InputError
from builder.common.paths import DOCKERIGNORE_NAME, OUTPUT_DIR
from builder.project.pattern import BadPattern, Glob, compile_pattern

__all__ = ["IgnoreRules", "compile_pattern", "clean"]

# What `astro dev init` ignores, and our own outputs.
ASTRO_DEFAULTS = (".git", ".env", "airflow_settings.yaml", "logs/", ".venv", "airflow.db", "airflow.cfg")
# Never in a layer, whatever the user's patterns say.
ALWAYS_EXCLUDED = (OUTPUT_DIR, "astro.lock")


@dataclass(frozen=True)
class Pattern:
    text: str
    exception: bool
    regex: Glob


def clean(text: str) -> str:
    text = posixpath.normpath(text.strip())
    return text.lstrip("/") or "."


class IgnoreRules:
    def __init__(self, lines: list[str] | tuple[str, ...]):
        self.patterns: list[Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            text = clean(line)
            if text == ".":
                continue
            try:
                self.patterns.append(Pattern(text, exception, compile_pattern(text, or_below=True)))
            except BadPattern as exc:
                raise InputError(f"not a valid pattern: {exc}", line=None) from None
        self.has_exceptions = any(p.exception for p in self.patterns)
        # Without exceptions a path is ignored when any pattern matches: one regex for them all where each has
        # one (a walk asks for every path of the project).
        self._any = None if self.has_exceptions or not self.patterns or any(p.regex.regex is None for p in self.patterns) \
            else re.compile("|".join(f"(?:{p.regex.regex.pattern})" for p in self.patterns), re.DOTALL)

    @classmethod
    def for_project(cls, project: Path, extra: tuple[str, ...] = ()) -> "IgnoreRules":
        lines = list(ASTRO_DEFAULTS)
        dockerignore = project / DOCKERIGNORE_NAME
        if dockerignore.is_file():
            own = dockerignore.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(own, start=1):
                try:
                    cls([line])
                except InputError as exc:
                    raise InputError(exc.message, path=dockerignore, line=number) from None
            lines += own
        lines += list(extra)
        lines += list(ALWAYS_EXCLUDED)
        return cls(lines)

    def ignored(self, relpath: str) -> bool:
        """Whether `relpath` (slash-separated, relative to the project) is excluded."""
        if self._any is not None:
            return self._any.fullmatch(relpath) is not None
        for pattern in reversed(self.patterns):  # the last matching pattern decides
            if pattern.regex.match(relpath):
                return not pattern.exception
        return False

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether an exception pattern could re-include something under an ignored `directory`."""
        if not self.has_exceptions:
            return False
        dir_parts = directory.split("/")
        for pattern in self.patterns:
            if not pattern.exception:
                continue
            parts = pattern.text.split("/")
            if "**" in pattern.text:
                return True
            if len(parts) > len(dir_parts) and all(fnmatchcase(d, p) for d, p in zip(dir_parts, parts)):
                return True
        return False
