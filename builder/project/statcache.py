"""Remembers each file's sha256 by its stat signature, so an unchanged file is never re-read.

A file changed within the same timestamp tick as the moment it was hashed could keep
its stat signature (git's "racy" case): entries whose mtime is that close to the
hashing time are not trusted on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from builder.common.atomic import atomic_write_bytes

RACY_MARGIN_NS = 50_000_000  # well above the coarse kernel clock tick used for file timestamps
FORMAT = 1


class StatCache:
    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        self.hashed_paths: set[str] = set()  # files read during this run
        self.started_ns = time.time_ns()
        self.dirty = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_bytes())
                if data.get("format") == FORMAT:
                    self.entries = data["entries"]
            except (ValueError, KeyError, OSError):
                self.entries = {}  # a corrupt cache is only a slower run

    def digest(self, abspath: str, relpath: str, st: os.stat_result) -> str:
        signature = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        cached = self.entries.get(relpath)
        if cached is not None and cached[:4] == signature:
            return cached[4]
        with open(abspath, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self.hashed_paths.add(relpath)
        if st.st_mtime_ns < self.started_ns - RACY_MARGIN_NS and st.st_ctime_ns < self.started_ns - RACY_MARGIN_NS:
            self.entries[relpath] = signature + [digest]
        else:
            self.entries.pop(relpath, None)
        self.dirty = True
        return digest

    def retain(self, relpaths: set[str]) -> None:
        stale = [p for p in self.entries if p not in relpaths]
        for path in stale:
            del self.entries[path]
        self.dirty = self.dirty or bool(stale)

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        payload = json.dumps({"format": FORMAT, "entries": self.entries}, separators=(",", ":")).encode()
        atomic_write_bytes(self.path, payload, fsync=False)  # a lost cache only costs re-reading
