"""Fetch pinned wheels into the store (verified) and install them into a staging tree for the image.

Installation uses pypa's `installer`: files are copied (never hard-linked to a cache), console
scripts get the image's interpreter in their shebang, RECORD and INSTALLER are written, and
no bytecode is compiled (a .pyc would carry host-specific timestamps).
"""

from __future__ import annotations

import netrc
import os
import posixpath
import shutil
import urllib.request
import zipfile
from base64 import b64encode
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit

from builder.errors import BuildError
from builder.layer_tar import LayerItem, with_parents
from builder.python_resolve import PinnedWheel, redact
from builder.python_target import PythonTarget
from builder.store import Store

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
    return {"Authorization": f"Basic {token}"}


def install(wheels: list[tuple[PinnedWheel, Path]], target: PythonTarget, staging: Path) -> None:
    from installer import install as install_wheel
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    for pin, path in wheels:
        scheme = {
            "purelib": target.site_packages,
            "platlib": target.site_packages,
            "scripts": target.scripts_dir,
            "data": target.prefix,
            "headers": f"{target.prefix}/include/python{target.version_text}/{pin.name}",
        }
        destination = SchemeDictionaryDestination(scheme, interpreter=target.interpreter, script_kind="posix",
                                                  bytecode_optimization_levels=(), destdir=str(staging))
        with zipfile.ZipFile(path) as archive:
            archive.filename = pin.filename  # the store names blobs by digest; installer reads the wheel's name here
            install_wheel(WheelFile(archive), destination, additional_metadata={"INSTALLER": b"airbuild\n"})


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


def remove(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
