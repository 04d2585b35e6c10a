"""What validation remembers between the builds of one process: owned by whoever runs them.

A one-shot command gets a fresh memory (nothing to remember); `watch` holds one for its whole
session, with `serve` on: a harness per environment kept running (Airflow imported once), the
per-file results already read, the modules already compiled, the environments already checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.store.limits import Limits
from builder.store.store import Store, WorkDir
from builder.validate.sandbox import Session


@dataclass
class ServedHarness:
    session: Session
    work: WorkDir    # its harness directory, removed with it
    place: Any       # builder.validate.run.Placement: where it sees the project
    store: Store     # held (shared) while it runs from the store's unpacked environment: no gc evicts that

    def close(self) -> None:
        self.session.close()
        self.work.release()
        self.store.close(Limits())  # no gc of its own: the build that ends next collects


@dataclass
class ValidationMemory:
    serve: bool = False                                          # keep a harness running per environment
    harnesses: dict[str, ServedHarness] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)       # file key -> result (watch asks on every save)
    file_keys: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (settings, file, content) -> key
    compiled: set[tuple[str, str]] = field(default_factory=set)  # (rootfs, source) compiled or tried
    environments: dict[str, str | None] = field(default_factory=dict)  # layer chain -> why not validatable

    def __enter__(self) -> "ValidationMemory":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        harnesses, self.harnesses = self.harnesses, {}
        for harness in harnesses.values():
            harness.close()
