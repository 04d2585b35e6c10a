"""`astro.lock`: pins what would otherwise float (the resolved base now; Debian and Python packages later).

It holds inputs only, never outputs: a DAG edit never changes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from builder.atomic import atomic_write_bytes
from builder.errors import InputError

FORMAT = 1


@dataclass(frozen=True)
class BasePin:
    source: str
    digest: str


@dataclass(frozen=True)
class Lock:
    base: BasePin

    def to_bytes(self) -> bytes:
        data = {"version": FORMAT, "base": {"source": self.base.source, "digest": self.base.digest}}
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
            raise InputError(f"unknown lock format; delete it and run `airbuild lock`", path=path)
        return cls(BasePin(**data["base"]))

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


def check_locked(path: Path, wanted: Lock) -> None:
    """For `--locked`: the inputs must resolve to exactly what the lock pins."""
    pinned = Lock.read(path)
    if pinned is None:
        raise LockMismatch("--locked, but there is no lock file; run `airbuild lock` and commit it", path=path)
    if pinned.base != wanted.base:
        raise LockMismatch(
            f"--locked, but the base changed: the lock pins {pinned.base.source} at {pinned.base.digest}, "
            f"the inputs give {wanted.base.source} at {wanted.base.digest}; run `airbuild lock` to accept it",
            path=path)
