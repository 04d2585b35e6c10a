"""Reading the line-per-item input files of the package rules (requirements.txt)."""

from __future__ import annotations


def listed_lines(text: str) -> list[str]:
    """The non-empty lines of `text`, `#` comments removed."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out
