"""The project's `.env`, read as `docker run --env-file` reads it, for the DAG sandbox only.

One `NAME=VALUE` per line, the value taken literally (quotes are part of it, as Docker keeps
them); a line with a name alone takes the caller's value when the caller has one; blank lines
and lines starting with `#` are skipped. A malformed line is a warning naming it, never a
failed build. The values are the user's secrets: they go into the sandbox's environment and
the validation cache key (as a hash), are masked in everything airbuild prints, and never reach
a layer (`.env` is in Astro's default ignore list) or the lock.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.common import masking
from builder.common.errors import InputError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Values masking would only make unreadable: booleans and numbers protect nothing.
_NOT_SECRET = re.compile(r"(?i:true|false|yes|no|on|off|none|null)|[0-9.]+")


@dataclass(frozen=True)
class DotEnv:
    path: Path | None
    values: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def load(path: Path, required: bool = False) -> DotEnv:
    """`path`'s variables; a missing file is empty unless it was asked for by name (`required`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if required:
            raise InputError(f"{path}: no such environment file") from None
        return DotEnv(None)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the environment file: {exc.strerror}") from None
    values: dict[str, str] = {}
    warnings = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        if not _NAME.fullmatch(name):
            warnings.append(f"{path}:{number}: not NAME=VALUE (a name has no spaces and starts with a letter or _): "
                            "line ignored")
            continue
        if not sep:
            if name in os.environ:
                values[name] = os.environ[name]
            continue
        values[name] = value
    for value in values.values():
        if not _NOT_SECRET.fullmatch(value.strip()):
            masking.add(value)
    return DotEnv(path, values, tuple(warnings))
