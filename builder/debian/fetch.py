"""Downloads from a Debian archive into the store, verified by sha256 before they land.

A file whose digest the store already has is never fetched again: the digest comes
from a signed Release file or from the lock.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

from builder.common.errors import BuildError
from builder.common.progress import Meter, transfers
from builder.store.store import Store

READ = 1 << 20
ATTEMPTS = 3
TIMEOUT_S = 60
T = TypeVar("T")  # what fetch_all's `then` makes of each file


class NotFound(BuildError):
    pass


def get(url: str) -> bytes:
    """A small file (InRelease), always from the network."""
    def read(response) -> bytes:
        return response.read()

    return _with_retries(url, read)


def fetch_verified(store: Store, url: str, sha256: str, size: int | None = None, meter: Meter | None = None) -> Path:
    """The store's blob for `sha256`, downloading it from `url` only when missing."""
    digest = "sha256:" + sha256
    if store.has_blob(digest, size):
        return store.blob_path(digest)

    def save(response) -> Path:
        with store.blob_writer() as blob:
            while chunk := response.read(READ):
                blob.write(chunk)
                if meter is not None:
                    meter.advance(len(chunk))
            if blob.digest != digest or (size is not None and blob.size != size):
                raise BuildError(f"{url}: got {blob.size} bytes with sha256 {blob.digest.split(':')[1]}, "
                                 f"expected {size} bytes with sha256 {sha256} (a mirror out of sync, "
                                 "or tampering); nothing was kept")
            blob.commit()
        return store.blob_path(digest)

    try:
        return _with_retries(url, save)
    except BuildError:
        if store.recover_blob(digest, size):  # the archive dropped a version the lock pins: the team's cache has it
            return store.blob_path(digest)
        raise


def _with_retries(url: str, consume):
    """`consume(response)` for a GET of `url`, retried on network errors; a 404 is NotFound at once."""
    error: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(_request(url), timeout=TIMEOUT_S) as response:
                return consume(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{url}: not found (404)") from None
            error = exc
        except (urllib.error.URLError, OSError) as exc:
            error = exc
        time.sleep(0.5 * (attempt + 1))
    raise BuildError(f"cannot fetch {url}: {error}")


def fetch_all(store: Store, wanted: list[tuple[str, str, int | None]], workers: int = 8,
              then: Callable[[int, Path], T] = lambda n, path: path) -> list[T]:
    """fetch_verified for many (url, sha256, size) at once, with progress on a terminal; `then(n, path)` of
    each (by default the path), in the same order. `then` runs in the worker as soon as its file is there,
    so reading one file overlaps the downloads of the others (lzma and hashing release the GIL)."""
    missing = [(url, sha, size) for url, sha, size in wanted if not store.has_blob("sha256:" + sha, size)]
    shown = transfers(f"downloading {len(missing)} files", sum(size or 0 for _, _, size in missing)) \
        if missing else nullcontext(None)
    with shown as meter, ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda n: then(n, fetch_verified(store, *wanted[n], meter=meter)), range(len(wanted))))


def _request(url: str) -> urllib.request.Request:
    if not url.startswith(("http://", "https://")):
        raise BuildError(f"unsupported archive URL {url!r}: only http:// and https:// are fetched")
    return urllib.request.Request(url, headers={"User-Agent": "airbuild"})
