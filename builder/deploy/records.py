"""`.airbuild/deploys.jsonl`: one JSON line per deploy, appended; `airbuild history` reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from builder.common import masking
from builder.common.paths import OUTPUT_DIR

RECORDS = "deploys.jsonl"


def records_path(project: Path) -> Path:
    return project / OUTPUT_DIR / RECORDS


def append(project: Path, record: dict[str, Any]) -> None:
    path = records_path(project)
    path.parent.mkdir(exist_ok=True)
    line = (json.dumps(masking.value(record), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of one line: concurrent deploys never interleave within a record
        os.fsync(fd)
    finally:
        os.close(fd)


def read(project: Path, target: str | None = None) -> list[dict[str, Any]]:
    """Every record, oldest first (a torn last line from a crash is skipped)."""
    try:
        lines = records_path(project).read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if target is None or record.get("target") == target:
            records.append(record)
    return records
