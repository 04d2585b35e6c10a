"""Debian control data: deb822 paragraphs, dependency relations and dpkg's version order.

All three are python-debian's: `deb822` reads paragraphs, `PkgRelation` relations, and
`version_compare` is dpkg's algorithm. Only a paragraph's own text is kept unparsed where it
must be written back byte for byte (a dpkg status file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from debian.deb822 import Deb822, PkgRelation
from debian.debian_support import version_compare


def paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as field -> value (continuation lines joined with newlines, first line stripped)."""
    for para in Deb822.iter_paragraphs(text.replace("\r\n", "\n").splitlines(True), use_apt_pkg=False):
        if para:
            yield dict(para)


def raw_paragraphs(text: str) -> list[str]:
    """The paragraphs' own text, unchanged (for rewriting a dpkg status file)."""
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")) if p.strip()]


def field_of(raw: str, name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}:[ \t]*(.*)$", raw, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


# -- versions -----------------------------------------------------------------------------------

def compare(a: str, b: str) -> int:
    return version_compare(a, b)


_OPS = {
    "<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
    ">=": lambda c: c >= 0, ">>": lambda c: c > 0,
    "<": lambda c: c <= 0, ">": lambda c: c >= 0,  # obsolete forms, as dpkg reads them
}


def satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    if op is None:
        return True
    return _OPS[op](compare(version, wanted))


# -- relations ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dep:
    name: str
    op: str | None = None
    version: str | None = None
    arch: str | None = None     # `:any` / `:native` qualifier

    def __str__(self) -> str:
        text = self.name + (f":{self.arch}" if self.arch else "")
        return text + (f" ({self.op} {self.version})" if self.op else "")


def relations(value: str | None, arch: str = "") -> list[list[Dep]]:
    """`a (>= 1) | b, c:any` -> [[a>=1, b], [c]]; alternatives restricted to other architectures drop out."""
    if not value:
        return []
    out = []
    for clause in PkgRelation.parse_relations(value.replace("\n", " ")):
        alternatives = []
        for alt in clause:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*", alt["name"] or ""):
                raise ValueError(f"cannot parse the relation {alt['name']!r} in {value.strip()!r}")
            arches = alt.get("arch")
            if arches and arch and not _arch_allowed([("" if a.enabled else "!") + a.arch for a in arches], arch):
                continue
            op, version = alt["version"] or (None, None)
            alternatives.append(Dep(alt["name"], op, version, alt.get("archqual")))
        if alternatives:
            out.append(alternatives)
    return out


def _arch_allowed(listed: list[str], arch: str) -> bool:
    negated = [a[1:] for a in listed if a.startswith("!")]
    if negated:
        return arch not in negated
    return arch in listed or "any" in listed


def provides(value: str | None) -> list[tuple[str, str | None]]:
    """Provides: name and exact version (or None) of each virtual package."""
    return [(d.name, d.version) for clause in relations(value) for d in clause]
