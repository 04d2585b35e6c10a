"""Fetch pinned wheels into the store (verified) and install them into a staging tree for the image.

Installation uses pypa's `installer`, as pip installs: in pip's order (builder/actions/python/install_order.py), a
file several wheels ship taken from the one installed last, REQUESTED for what requirements.txt
names. Files are copied (never hard-linked to a cache), console scripts get the image's interpreter
in their shebang, RECORD and INSTALLER are written, and no bytecode is compiled (a .pyc would carry
host-specific timestamps).
"""

from __future__ import annotations

import contextlib
import netrc
import os
import posixpath
import urllib.request
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from base64 import b64encode
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit

from installer import install as install_wheel
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.requirements import Requirement

from builder.common import masking
from builder.common.progress import Meter, transfers
from builder.common.errors import BuildError
from builder.actions.python.install_order import Distribution, install_order
from builder.layers.tar import LayerItem, with_parents
from builder.actions.python.resolve import PinnedWheel, redact
from builder.actions.python.target import PythonTarget, normalise
from builder.actions.python.wheel_files import scheme_for
from builder.store.store import Store

READ = 1 << 20
FETCH_WORKERS = 6  # downloads at once: enough to fill a link with many small wheels, polite to an index


def fetch(store: Store, pin: PinnedWheel, index_hosts: set[str], meter: Meter | None = None) -> Path:
    """The wheel's file in the store, downloaded once and checked against its pinned sha256."""
    digest = "sha256:" + pin.sha256
    if store.has_blob(digest):
        return store.blob_path(digest)
    request = urllib.request.Request(pin.url, headers=_auth_headers(pin.url, index_hosts))
    try:
        with urllib.request.urlopen(request, timeout=120) as response, store.blob_writer() as blob:
            while chunk := response.read(READ):
                blob.write(chunk)
                if meter is not None:
                    meter.advance(len(chunk))
            if blob.digest != digest:
                raise BuildError(f"{pin.filename}: downloaded file has {blob.digest}, the lock pins {digest}")
            blob.commit()
    except (URLError, OSError) as exc:
        if store.recover_blob(digest, pin.size):  # the index dropped what the lock pins: the team's cache has it
            return store.blob_path(digest)
        raise BuildError(f"cannot download {pin.filename} from {redact(pin.url)}: {redact(str(exc))}") from None
    return store.blob_path(digest)


def fetch_all(store: Store, pins: list[PinnedWheel], index_hosts: set[str]) -> list[Path]:
    """`fetch` for each pin, FETCH_WORKERS at a time, with progress on a terminal; paths in the pins' order."""
    missing = [pin for pin in pins if not store.has_blob("sha256:" + pin.sha256)]
    if missing:
        with transfers(f"downloading {len(missing)} wheels", sum(p.size for p in missing)) as meter, \
                ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
            for future in [pool.submit(fetch, store, pin, index_hosts, meter) for pin in missing]:
                future.result()
    return [fetch(store, pin, index_hosts) for pin in pins]


def _auth_headers(url: str, index_hosts: set[str]) -> dict[str, str]:
    """Basic auth for a private index's host, from the environment or ~/.netrc; never stored anywhere."""
    host = urlsplit(url).hostname or ""
    user, password = os.environ.get("AIRBUILD_INDEX_USERNAME"), os.environ.get("AIRBUILD_INDEX_PASSWORD")
    if not (user and password and host in index_hosts):
        try:
            found = netrc.netrc().authenticators(host)
        except (FileNotFoundError, netrc.NetrcParseError):
            found = None
        if not found:
            return {}
        user, _, password = found
    token = b64encode(f"{user}:{password}".encode()).decode()
    masking.add(password)
    masking.add(token)
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class InstallSet:
    """What besides the wheels decides the installed tree, as pip would install them."""

    roots: tuple[str, ...]                       # requirements.txt's requirements: pip's roots, marked REQUESTED
    base: tuple[Distribution, ...] = ()          # what the image has already (nodes of pip's dependency graph)
    environment: dict[str, str] = field(default_factory=dict)  # marker variables of the image's Python


def pip_order(roots: tuple[str, ...], dists: dict[str, Distribution], install_set: InstallSet) -> list[str]:
    """The order pip installs `dists` (name -> metadata) in; a pin no root leads to (the roots could not be
    read, e.g. a URL without a name) after the rest, by name."""
    known = {dist.name: dist for dist in install_set.base}
    known.update(dists)
    order = install_order(list(roots), known, install_set.environment)
    return order + sorted(set(dists) - set(order))


def requested_names(roots: tuple[str, ...]) -> set[str]:
    return {normalise(Requirement(text).name) for text in roots}


def install(wheels: list[tuple[PinnedWheel, str, Path]], target: PythonTarget, staging: Path,
            requested: set[str]) -> None:
    """Install (pin, wheel file name, path) into `staging` in the order given (pip's: a file several wheels ship is
    taken from the one installed last, each RECORD keeps what its wheel wrote, as pip leaves it), REQUESTED for
    the distributions `requested` names."""
    for pin, filename, path in wheels:
        destination = SchemeDictionaryDestination(scheme_for(target, pin.name), interpreter=target.interpreter,
                                                  script_kind="posix", bytecode_optimization_levels=(),
                                                  destdir=str(staging), overwrite_existing=True)
        metadata = {"INSTALLER": b"airbuild\n", **({"REQUESTED": b""} if normalise(pin.name) in requested else {})}
        with zipfile.ZipFile(path) as archive:
            archive.filename = filename  # the store names blobs by digest; installer reads the wheel's name here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # installer skips __pycache__ shipped in wheels
                install_wheel(WheelFile(archive), destination, additional_metadata=metadata)


def staged_items(staging: Path, drop: tuple[str, ...] = ()) -> list[LayerItem]:
    """Layer items for everything under `staging`, owned by root, modes normalised; the image paths `drop` names
    are left out (another layer holds them)."""
    for path in drop:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging / path)
    items = []
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, staging)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            image_path = posixpath.normpath(posixpath.join(rel_dir, name))
            if os.path.islink(path):
                items.append(LayerItem(image_path, "symlink", 0o777, link=os.readlink(path)))
            else:
                mode = 0o755 if st.st_mode & 0o100 else 0o644
                items.append(LayerItem(image_path, "file", mode, size=st.st_size, source=path))
    return with_parents(items)


