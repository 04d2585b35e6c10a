"""The one way a JSON-like value becomes a key: sha256 of its canonical JSON (keys sorted)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_sha256(value: Any) -> str:
    """Hex sha256 of `value` as JSON with sorted keys: equal values give equal keys on every machine."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
