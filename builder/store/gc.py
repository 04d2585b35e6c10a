"""Evict the least recently used entries until the store fits its limits.

The caller holds the store's lock exclusively (builder.store.store.Store): no build is running, so
nothing evicted is in use. Layer records whose blob was evicted go with it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from builder.store.entries import LAYER_RECORD_DIRS, QUARANTINED, Entry, entries, remove
from builder.store.limits import Limits
from builder.store.sweep import sweep_all


@dataclass
class GcReport:
    before: int                    # bytes, all kinds
    after: int
    evicted: dict[str, dict] = field(default_factory=dict)  # kind -> {"count", "bytes"}
    temps_removed: int = 0
    dry_run: bool = False
    max_size: int | None = None
    keep_days: float | None = None

    def to_json(self) -> dict:
        return {"before_bytes": self.before, "after_bytes": self.after, "evicted": self.evicted,
                "temps_removed": self.temps_removed, "dry_run": self.dry_run, "max_size": self.max_size,
                "keep_days": self.keep_days}


def needed(root: Path, limits: Limits, now: float | None = None) -> bool:
    """Whether the store is over its limits (a listing and a stat per entry: no blob is opened)."""
    now = time.time() if now is None else now
    found = list(entries(root, kinds=False))
    if limits.max_size is not None and sum(e.size for e in found) > limits.max_size:
        return True
    return limits.keep_days is not None and any(e.used < now - limits.keep_days * 86400 for e in found)


def collect(root: Path, limits: Limits, dry_run: bool = False, now: float | None = None,
            recent: set[Path] | frozenset[Path] = frozenset()) -> GcReport:
    """`recent`: entries just used (by the build ending now), newer than any mtime says (touched hourly only)."""
    now = time.time() if now is None else now
    temps = 0 if dry_run else sweep_all(root)
    found = sorted((Entry(e.path, e.kind, e.size, now) if e.path in recent else e for e in entries(root)),
                   key=lambda e: (e.used, str(e.path)))  # least recently used first
    total = sum(e.size for e in found)
    victims: list[Entry] = []
    keep: list[Entry] = []
    cutoff = now - limits.keep_days * 86400 if limits.keep_days is not None else None
    for entry in found:
        (victims if entry.kind == QUARANTINED or (cutoff is not None and entry.used < cutoff) else keep).append(entry)
    size = total - sum(e.size for e in victims)
    if limits.max_size is not None:
        for entry in keep:
            if size <= limits.max_size:
                break
            victims.append(entry)
            size -= entry.size
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for entry in victims:
        counts[entry.kind] += 1
        sizes[entry.kind] += entry.size
        if not dry_run:
            remove(entry.path)
    if not dry_run:
        size -= _drop_dangling_records(root)
        _drop_lock_files(root)
    return GcReport(total, size, {k: {"count": counts[k], "bytes": sizes[k]} for k in counts}, temps, dry_run,
                    limits.max_size, limits.keep_days)


def _drop_dangling_records(root: Path) -> int:
    """Layer records naming a blob no longer in the store: a miss either way, so their bytes are freed."""
    freed = 0
    for directory in LAYER_RECORD_DIRS:
        for entry in entries_of(root / directory):
            try:
                digest = json.loads(entry.read_bytes())["digest"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # `cache verify` deals with unreadable records
            if not (root / "blobs" / "sha256" / str(digest).removeprefix("sha256:")).exists():
                freed += entry.stat().st_size
                remove(entry)
    return freed


def _drop_lock_files(root: Path) -> None:
    """The per-key and per-environment lock files builds leave (one per layer ever built): no build runs now."""
    for directory in ("layers", "rootfs"):
        try:
            found = [p for p in (root / directory).iterdir() if p.suffix == ".lock"]
        except FileNotFoundError:
            continue
        for path in found:
            path.unlink(missing_ok=True)


def entries_of(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
