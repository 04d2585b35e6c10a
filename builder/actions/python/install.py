"""Fetch pinned wheels into the store (verified) and install them into a staging tree for the image.

Installation uses pypa's `installer`, as pip installs: in pip's order (builder/actions/python/install_order.py), a
file several wheels ship taken from the one installed last, REQUESTED for what requirements.txt
names. Files are copied (never hard-linked to a cache), console scripts get the image's interpreter
in their shebang, RECORD and INSTALLER are written, and no bytecode is compiled (a .pyc would carry
host-specific timestamps).
"""

from __future__ import annotations

import netrc
import os
import posixpath
import shutil
import subprocess
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from base64 import b64encode
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit

from installer import install as install_wheel
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from builder.common import masking
from builder.common import tools
from builder.common.errors import BuildError
from builder.actions.python.install_order import Distribution, install_order
from builder.layers.tar import LayerItem, with_parents
from builder.actions.python.resolve import PinnedWheel, redact
from builder.actions.python.target import PythonTarget, normalise
from builder.store.store import Store

READ = 1 << 20


def fetch(store: Store, pin: PinnedWheel, index_hosts: set[str]) -> Path:
    """The wheel's file in the store, downloaded once and checked against its pinned sha256."""
    digest = "sha256:" + pin.sha256
    if store.has_blob(digest):
        return store.blob_path(digest)
    request = urllib.request.Request(pin.url, headers=_auth_headers(pin.url, index_hosts))
    try:
        with urllib.request.urlopen(request, timeout=120) as response, store.blob_writer() as blob:
            while chunk := response.read(READ):
                blob.write(chunk)
            if blob.digest != digest:
                raise BuildError(f"{pin.filename}: downloaded file has {blob.digest}, the lock pins {digest}")
            blob.commit()
    except (URLError, OSError) as exc:
        if store.recover_blob(digest, pin.size):  # the index dropped what the lock pins: the team's cache has it
            return store.blob_path(digest)
        raise BuildError(f"cannot download {pin.filename} from {redact(pin.url)}: {redact(str(exc))}") from None
    return store.blob_path(digest)


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


def built_wheel(store: Store, pin: PinnedWheel, sdist: Path, target: PythonTarget) -> tuple[str, Path]:
    """(file name, path) of a pure-Python wheel built from an sdist, once per sdist and Python version.

    Only a wheel that runs anywhere (py3-none-any) can be built on this host for the image;
    an sdist that compiles code for the host is an error naming the package.
    """
    record_name = f"{pin.sha256}-{target.abi}"
    known = store.get_record("built-wheels", record_name)
    if known is not None and store.has_blob(known["digest"]):
        return known["filename"], store.blob_path(known["digest"])
    with tempfile.TemporaryDirectory(prefix="airbuild-sdist-") as tmp:
        source = Path(tmp) / pin.filename
        shutil.copyfile(sdist, source)
        proc = subprocess.run([tools.uv(), "build", "--wheel", "--no-config", "--python", target.version_text,
                               "--out-dir", str(Path(tmp) / "out"), str(source)],
                              capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "UV_NO_PROGRESS": "1", "SOURCE_DATE_EPOCH": "315532800"})
        wheels = sorted((Path(tmp) / "out").glob("*.whl")) if proc.returncode == 0 else []
        if not wheels:
            raise BuildError(f"{pin.name} {pin.version} has no wheel for {target.describe()} and its sdist does not "
                             f"build:\n{redact(proc.stderr.strip())[-2000:]}")
        tags = parse_wheel_filename(wheels[0].name)[3]
        if not all(tag.abi == "none" and tag.platform == "any" for tag in tags):
            raise BuildError(f"{pin.name} {pin.version} has no wheel for {target.describe()}, and its sdist builds "
                             f"code for this host ({wheels[0].name}), not for the image; pin a version with a wheel")
        digest = store.put_blob(wheels[0].read_bytes())
    store.put_record("built-wheels", record_name, {"filename": wheels[0].name, "digest": digest})
    return wheels[0].name, store.blob_path(digest)


@dataclass(frozen=True)
class InstallSet:
    """What besides the wheels decides the installed tree, as pip would install them."""

    roots: tuple[str, ...]                       # requirements.txt's requirements: pip's roots, marked REQUESTED
    base: tuple[Distribution, ...] = ()          # what the image has already (nodes of pip's dependency graph)
    environment: dict[str, str] = field(default_factory=dict)  # marker variables of the image's Python


def install(store: Store, wheels: list[tuple[PinnedWheel, Path]], target: PythonTarget, staging: Path,
            install_set: InstallSet) -> list[str]:
    """Install the wheels into `staging` as pip would: in pip's order, a file several wheels ship taken from the
    one installed last (each RECORD keeps what its wheel wrote, as pip leaves it), REQUESTED for the roots.
    Returns the distributions' names in the order they were installed."""
    built = {}
    for pin, path in wheels:
        filename, path = built_wheel(store, pin, path, target) if pin.kind == "sdist" else (pin.filename, path)
        with zipfile.ZipFile(path) as archive:
            built[normalise(pin.name)] = (pin, filename, path, _wheel_metadata(archive, filename))
    dists = {dist.name: dist for dist in install_set.base}
    dists.update((name, meta) for name, (_, _, _, meta) in built.items())
    order = install_order(list(install_set.roots), dists, install_set.environment)
    # A pin no root leads to (the roots could not be read, e.g. a URL without a name): after the rest, by name.
    order += sorted(set(built) - set(order))
    requested = {normalise(Requirement(text).name) for text in install_set.roots}
    for name in order:
        pin, filename, path, _ = built[name]
        scheme = {
            "purelib": target.site_packages,
            "platlib": target.site_packages,
            "scripts": target.scripts_dir,
            "data": target.prefix,
            "headers": f"{target.include}/{pin.name}",
        }
        destination = SchemeDictionaryDestination(scheme, interpreter=target.interpreter, script_kind="posix",
                                                  bytecode_optimization_levels=(), destdir=str(staging),
                                                  overwrite_existing=True)
        metadata = {"INSTALLER": b"airbuild\n", **({"REQUESTED": b""} if name in requested else {})}
        with zipfile.ZipFile(path) as archive:
            archive.filename = filename  # the store names blobs by digest; installer reads the wheel's name here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # installer skips __pycache__ shipped in wheels
                install_wheel(WheelFile(archive), destination, additional_metadata=metadata)
    return order


def _wheel_metadata(archive: zipfile.ZipFile, filename: str) -> Distribution:
    found = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if len(found) != 1:
        raise BuildError(f"{filename} is not a valid wheel: it has {len(found)} .dist-info/METADATA files")
    return Distribution.from_metadata(archive.read(found[0]).decode("utf-8", "replace"))


def staged_items(staging: Path) -> list[LayerItem]:
    """Layer items for everything under `staging`, owned by root, modes normalised."""
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


