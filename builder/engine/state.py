"""What the last build of a project looked like (`.airbuild/state.json`), to explain rebuilds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from builder.common.atomic import atomic_write_bytes

FORMAT = 1


@dataclass
class StepState:
    key: str
    parent_key: str
    config_hash: str
    leaves: dict[str, str]


@dataclass
class PreviousBuild:
    steps: dict[str, StepState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "PreviousBuild":
        try:
            data = json.loads(path.read_bytes())
            if data.get("format") != FORMAT:
                return cls()
            return cls({name: StepState(**value) for name, value in data["steps"].items()})
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        # vars(), not asdict(): asdict deep-copies every step's leaves (one per file) only to serialise them
        payload = {"format": FORMAT, "steps": {name: vars(s) for name, s in self.steps.items()}}
        atomic_write_bytes(path, json.dumps(payload, separators=(",", ":")).encode(), fsync=False)
