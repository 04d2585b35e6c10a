"""packages.txt as Astro reads it, checked line by line: no Debian module is needed for that."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.common.errors import InputError

NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]+$")


@dataclass(frozen=True)
class Listed:
    name: str
    version: str | None
    line: int


def parse_package_list(text: str, path: Path) -> list[Listed]:
    """packages.txt as Astro reads it: names (several a line allowed), `#` comments, CRLF, `name=version`."""
    listed: dict[str, tuple[str | None, int]] = {}  # name -> (version, line)
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        for word in raw.split("#", 1)[0].split():
            name, sep, version = word.partition("=")
            if not NAME.match(name) or (sep and not version):
                hint = " (architecture qualifiers are not supported)" if ":" in name else \
                       " (suite pins are not supported: use name=version)" if "/" in name else ""
                raise InputError(f"{word!r} is not a Debian package name or name=version{hint}",
                                 path=path, line=number)
            previous = listed.get(name)
            if previous is not None and previous[0] != (version or None):
                raise InputError(f"{name} is listed twice with different versions "
                                 f"(line {previous[1]} and here)", path=path, line=number)
            listed.setdefault(name, (version or None, number))
    return [Listed(name, version, line) for name, (version, line) in listed.items()]
