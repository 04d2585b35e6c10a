"""What every benchmark ends with: the machine it ran on, and the report printed as JSON (and written to --out)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine(load_before: float) -> dict:
    """The machine's description: cores, Python, and the 1-minute load average before the run and now."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def emit(report: dict, out: Path | None) -> None:
    """Print the report as JSON; with `out`, write the same text there."""
    text = json.dumps(report, indent=2)
    if out:
        out.write_text(text + "\n")
    print(text)
