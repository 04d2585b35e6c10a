"""Check the whole store: rehash every blob, read every record; move what is corrupt to quarantine/.

A corrupt entry is never served again (builds read blobs by digest and check them; a quarantined
blob is simply missing, so it is fetched or built again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from builder.store.entries import BLOBS, LAYER_RECORD_DIRS, QUARANTINED, Entry, entries

CHUNK = 1 << 20
RECORD_FIELDS = {"diff_id", "digest", "size", "media_type"}


@dataclass
class Corrupt:
    path: str        # relative to the store
    kind: str
    reason: str
    quarantined: str | None  # where it is now, relative to the store; None: removed (an unpacked environment)

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class VerifyReport:
    checked: dict[str, int] = field(default_factory=dict)  # kind -> entries checked
    bytes_hashed: int = 0
    corrupt: list[Corrupt] = field(default_factory=list)
    temps_removed: int = 0

    def to_json(self) -> dict:
        return {"checked": self.checked, "bytes_hashed": self.bytes_hashed,
                "corrupt": [c.to_json() for c in self.corrupt], "temps_removed": self.temps_removed}


def verify(root: Path, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    report = VerifyReport()
    checked: Counter = Counter()
    found = [e for e in entries(root) if e.kind != QUARANTINED and not e.path.is_dir()]
    for done, entry in enumerate(found, 1):
        reason = _problem(root, entry, report)
        checked[entry.kind] += 1
        if reason:
            report.corrupt.append(Corrupt(str(entry.path.relative_to(root)), entry.kind, reason,
                                          _quarantine(root, entry.path)))
        if progress is not None:
            progress(done, len(found))
    report.checked = dict(sorted(checked.items()))
    return report


def _problem(root: Path, entry: Entry, report: VerifyReport) -> str | None:
    relative = entry.path.relative_to(root)
    if relative.parent == BLOBS:
        digest = hashlib.sha256()
        try:
            with open(entry.path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    report.bytes_hashed += len(chunk)
        except FileNotFoundError:
            return None  # gone meanwhile (evicted by a gc is impossible under our lock; a quarantine by another verify)
        actual = digest.hexdigest()
        return None if actual == entry.path.name else f"its content hashes to sha256:{actual}"
    try:
        value = json.loads(entry.path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON ({exc})"
    if relative.parts[0] in LAYER_RECORD_DIRS:
        if not isinstance(value, dict) or set(value) != RECORD_FIELDS:
            return "not a layer record"
        blob = root / BLOBS / str(value["digest"]).removeprefix("sha256:")
        try:
            if blob.stat().st_size != value["size"]:
                return f"names {value['digest']} of {value['size']} bytes; the store's has {blob.stat().st_size}"
        except FileNotFoundError:
            pass  # a miss, not a corruption: the layer is built again
    return None


def _quarantine(root: Path, path: Path) -> str:
    relative = path.relative_to(root)
    target = root / "quarantine" / "__".join(relative.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return str(target.relative_to(root))

