"""`astro.lock`: pins what would otherwise float: the resolved base, and one section per
resolving rule (Debian packages, Python distributions).

It holds inputs only, never outputs: a DAG edit never changes it. A section records the
hash of the inputs it was resolved from; while they are unchanged the pins are reused
without resolving again (and without the network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.common.atomic import atomic_write_bytes
from builder.common.errors import InputError

FORMAT = 1


@dataclass(frozen=True)
class BasePin:
    source: str
    digest: str


@dataclass(frozen=True)
class LockSection:
    inputs: str                          # hash of what the entries were resolved from
    entries: tuple[dict[str, Any], ...]  # the section's own records (each rule defines them)

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "entries": list(self.entries)}


@dataclass(frozen=True)
class Lock:
    base: BasePin
    sections: dict[str, LockSection] = field(default_factory=dict)

    def pinned_files(self) -> list[tuple[str, int]]:
        """(sha256:..., size) of every file the sections pin (.debs, wheels), sorted, each once."""
        return sorted({(f"sha256:{entry['sha256']}", entry["size"]) for section in self.sections.values()
                       for entry in section.entries
                       if isinstance(entry, dict) and entry.get("sha256") and entry.get("size")})

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {"version": FORMAT, "base": {"source": self.base.source, "digest": self.base.digest}}
        for name in sorted(self.sections):
            data[name] = self.sections[name].to_json()
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def read(cls, path: Path) -> "Lock | None":
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise InputError(f"not valid JSON ({exc}); delete it and run `airbuild lock`", path=path) from None
        if not isinstance(data, dict) or data.get("version") != FORMAT or "base" not in data:
            raise InputError("unknown lock format; delete it and run `airbuild lock`", path=path)
        sections = {name: LockSection(value["inputs"], tuple(value["entries"]))
                    for name, value in data.items() if name not in ("version", "base")}
        return cls(BasePin(**data["base"]), sections)

    def write(self, path: Path) -> bool:
        """Write the lock if it differs from what is there; True when the file changed."""
        new = self.to_bytes()
        try:
            if path.read_bytes() == new:
                return False
        except FileNotFoundError:
            pass
        atomic_write_bytes(path, new)
        return True


class LockMismatch(InputError):
    pass


@dataclass
class LockState:
    """The lock as a build sees it: what the file pins, and what this build resolved."""

    path: Path
    pinned: Lock | None
    locked: bool                                   # --locked: use exactly the pins, fail if inputs moved
    upgrade: bool | frozenset[str] = False         # `lock --upgrade[-package]`: re-resolve regardless
    resolved: dict[str, LockSection] = field(default_factory=dict)

    def reusable(self, section: str, inputs: str, what: str) -> LockSection | None:
        """The pinned section when it was resolved from `inputs`; None means resolve again.

        With --locked, inputs that moved are an error naming `what` changed.
        """
        pinned = self.pinned.sections.get(section) if self.pinned else None
        if pinned is not None and pinned.inputs == inputs and self.upgrade is False:
            return pinned
        if self.locked:
            state = "has no" if pinned is None else "no longer matches its"
            raise LockMismatch(f"--locked, but {what} {state} `{section}` section in the lock; "
                               "run `airbuild lock` and commit the result", path=self.path)
        return None

    def record(self, section: str, value: LockSection) -> None:
        self.resolved[section] = value


def check_base(state: LockState, wanted: BasePin) -> None:
    """For `--locked`: the base must resolve to exactly what the lock pins."""
    if state.pinned is None:
        raise LockMismatch("--locked, but there is no lock file; run `airbuild lock` and commit it", path=state.path)
    if state.pinned.base != wanted:
        raise LockMismatch(
            f"--locked, but the base changed: the lock pins {state.pinned.base.source} at {state.pinned.base.digest}, "
            f"the inputs give {wanted.source} at {wanted.digest}; run `airbuild lock` to accept it",
            path=state.path)


# The default rules keep the section names every lock has had; any other rule's section is its name.
_LEGACY_SECTIONS = {"python-requirements": "python", "system-packages": "debian"}


def section_for(rule_name: str) -> str:
    """The section of astro.lock a resolving rule pins its inputs in: two rules never share one."""
    return _LEGACY_SECTIONS.get(rule_name, rule_name)
