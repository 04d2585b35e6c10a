"""How many blobs move at once, and running a transfer for each of several blobs that way.

`AIRBUILD_TRANSFERS` blobs at a time (default 4, as docker pushes 5 and pulls 3): one
connection each, so a registry's per-request latency and a single stream's ceiling are not
the limit. The first failure stops the blobs not yet started and is raised once the
running ones end; the caller then writes nothing that refers to the blobs (the manifest
goes last).
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

from builder.common.errors import InputError

ENV = "AIRBUILD_TRANSFERS"
DEFAULT = 4
MAX = 32
T = TypeVar("T")


def workers() -> int:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX:
        raise InputError(f"{ENV} must be a whole number from 1 to {MAX} (blobs moved at once), got {raw!r}")
    return int(raw)


def each(action: Callable[[T], None], items: Iterable[T], limit: int | None = None) -> None:
    """`action(item)` for every item, `limit` (default: workers()) at a time; the first exception is raised."""
    items = list(items)
    limit = min(limit or workers(), len(items))
    if limit <= 1:
        for item in items:
            action(item)
        return
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="airbuild-transfer") as pool:
        futures = [pool.submit(action, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()
