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

from builder.common.paths import DOCKERIGNORE_NAME, OUTPUT_DIR

# What `astro dev init` ignores, and our own outputs.
ASTRO_DEFAULTS = (".git", ".env", "airflow_settings.yaml", "logs/", ".venv", "airflow.db", "airflow.cfg")
# Never in a layer, whatever the user's patterns say.
ALWAYS_EXCLUDED = (OUTPUT_DIR, "astro.lock")


@dataclass(frozen=True)
class Pattern:
    text: str
    exception: bool
    regex: re.Pattern[str]


def compile_pattern(text: str, *, or_below: bool = False) -> re.Pattern[str]:
    """Docker's pattern syntax as a regex; `or_below` also matches every path under a matching one."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if text.startswith("**", i):
            i += 2
            if i < len(text) and text[i] == "/":
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = text.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = text[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            out.append(re.escape(text[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    # A match on a parent directory is a match: "pattern/anything" is the same as checking each prefix.
    return re.compile("^" + "".join(out) + ("(?:/.*)?$" if or_below else "$"), re.DOTALL)


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
            self.patterns.append(Pattern(text, exception, compile_pattern(text, or_below=True)))
        self.has_exceptions = any(p.exception for p in self.patterns)
        # Without exceptions a path is ignored when any pattern matches: one regex for them all (a walk asks
        # for every path of the project).
        self._any = None if self.has_exceptions or not self.patterns else \
            re.compile("|".join(f"(?:{p.regex.pattern})" for p in self.patterns), re.DOTALL)

    @classmethod
    def for_project(cls, project: Path, extra: tuple[str, ...] = ()) -> "IgnoreRules":
        lines = list(ASTRO_DEFAULTS)
        dockerignore = project / DOCKERIGNORE_NAME
        if dockerignore.is_file():
            lines += dockerignore.read_text(encoding="utf-8", errors="replace").splitlines()
        lines += list(extra)
        lines += list(ALWAYS_EXCLUDED)
        return cls(lines)

    def ignored(self, relpath: str) -> bool:
        """Whether `relpath` (slash-separated, relative to the project) is excluded."""
        if self._any is not None:
            return self._any.match(relpath) is not None
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
