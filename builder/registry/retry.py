"""Retries with backoff for HTTP: what is worth retrying, how long to wait, when to give up.

Shared by the registry client and the Astro Deploy API client (`builder.deploy.astro.api`), so both
retry the same failures the same way: connection errors and dropped answers, 408, 429 and 5xx;
exponential backoff with jitter, at most 8 s a wait, `Retry-After` honoured up to 30 s;
`AIRBUILD_REGISTRY_RETRIES` attempts per request (default 6) and `AIRBUILD_REGISTRY_TIMEOUT` seconds
without progress (default 60).
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import time
from typing import Callable, NoReturn, TypeVar

import httpx

from builder.common.errors import InputError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ENV_RETRIES = "AIRBUILD_REGISTRY_RETRIES"     # attempts per request (default 6)
ENV_TIMEOUT = "AIRBUILD_REGISTRY_TIMEOUT"     # seconds without progress before a request fails (default 60)
MAX_BACKOFF_S = 8.0
T = TypeVar("T")


class Transient(Exception):
    """A failure worth retrying: a connection problem, 408, 429 or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None, response: httpx.Response | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.response = response


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number, got {raw!r}") from None


def attempts() -> int:
    return max(1, int(env_number(ENV_RETRIES, 6)))


def timeout() -> httpx.Timeout:
    seconds = env_number(ENV_TIMEOUT, 60)
    return httpx.Timeout(seconds, connect=min(seconds, 10))


def backoff(number: int, retry_after: float | None = None) -> None:
    delay = min(MAX_BACKOFF_S, 0.25 * 2 ** (number - 1)) * (0.75 + random.random() / 2)
    if retry_after is not None:
        delay = min(max(delay, retry_after), 30.0)
    time.sleep(delay)


def transient_status(response: httpx.Response, detail: Callable[[httpx.Response], str]) -> Transient | None:
    """A Transient for a 408, 429 or 5xx answer (closed, its body summarised by `detail`), else None."""
    if response.status_code not in RETRY_STATUS:
        return None
    seconds = retry_after_seconds(response.headers.get("Retry-After"))
    summary = detail(response)
    response.close()
    return Transient(f"HTTP {response.status_code}" + (f": {summary}" if summary else ""), seconds, response)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number (`2`, `1.5`) or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retrying(what: str, attempt: Callable[[], T], tries: int,
             give_up: Callable[[str, Transient], NoReturn]) -> T:
    """Run `attempt` until it does not raise Transient, with backoff; after `tries`, `give_up(message, last)`."""
    for number in range(1, tries + 1):
        try:
            return attempt()
        except Transient as exc:
            if number == tries:
                give_up(f"{what}: gave up after {number} attempts", exc)
            backoff(number, exc.retry_after)
    raise AssertionError("unreachable")
