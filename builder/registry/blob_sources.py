"""Which repositories of a registry are known to hold a blob: where a push can mount it from.

A hint kept in the store (`registry-blobs/<registry>.json`, digest -> repositories), filled
by pulls and pushes. A stale entry costs one mount request that the registry answers with
202, and the push uploads as usual.
"""

from __future__ import annotations

import hashlib

from builder.store.store import Store

KIND = "registry-blobs"
MAX_REPOS = 8


class BlobSources:
    def __init__(self, store: Store, registry: str):
        self.store = store
        self.name = hashlib.sha256(registry.encode()).hexdigest()[:32]
        self.known: dict[str, list[str]] = (store.get_record(KIND, self.name) or {}).get("blobs", {})
        self._changed = False

    def repositories(self, digest: str, besides: str) -> list[str]:
        return [repo for repo in self.known.get(digest, []) if repo != besides]

    def add(self, digest: str, repository: str) -> None:
        repos = self.known.setdefault(digest, [])
        if repository in repos:
            return
        repos.insert(0, repository)
        del repos[MAX_REPOS:]
        self._changed = True

    def save(self) -> None:
        if self._changed:
            (self.store.root / KIND).mkdir(exist_ok=True)
            self.store.put_record(KIND, self.name, {"blobs": self.known})
            self._changed = False
