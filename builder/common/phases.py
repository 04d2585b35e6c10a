"""Seconds spent per phase of a build (resolve, fetch, install, tar, compress), for benchmarks.

With `AIRBUILD_PHASE_TIMES=FILE`, the totals are written to FILE as JSON when the process
exits; without it, nothing is kept beyond a few additions per layer.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from typing import Iterator

ENV = "AIRBUILD_PHASE_TIMES"
_totals: dict[str, float] = {}


def add(phase: str, seconds: float) -> None:
    _totals[phase] = _totals.get(phase, 0.0) + seconds


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        add(phase, time.perf_counter() - started)


def _write() -> None:
    path = os.environ.get(ENV)
    if path and _totals:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({phase: round(seconds, 4) for phase, seconds in sorted(_totals.items())}, handle)


# Always: the build server imports this module before a command's environment (which may set ENV) is known;
# its forked command runs the exit functions with its own.
atexit.register(_write)
