"""The files of an image on disk: an OCI layout directory, or a tarball (OCI layout or docker-archive).

One reader for everything that takes an image from a file: bases (`oci:`, `archive:`) and `inspect`.
Names are paths inside the layout (`index.json`, `blobs/sha256/HEX`); blobs read through `blob()` are
checked against their digest, since the file is not ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from builder.common.errors import InputError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
MAX_METADATA = 16 << 20


class ImageFiles:
    def __init__(self, where: str, names: set[str] | None, open_name: Callable[[str], BinaryIO]):
        self.where = where          # for messages: what the user named
        self._names = names         # None: a directory (ask the filesystem)
        self._open = open_name

    def has(self, name: str) -> bool:
        if self._names is not None:
            return name in self._names
        try:
            self._open(name).close()
        except FileNotFoundError:
            return False
        except OSError:
            return True  # there, but unreadable: open() says why
        return True

    def open(self, name: str) -> BinaryIO:
        try:
            if self._names is not None and name not in self._names:
                raise FileNotFoundError(name)
            return self._open(name)
        except FileNotFoundError:
            raise InputError(f"{self.where}: missing {name}") from None
        except OSError as exc:  # a directory where a file should be, no permission...
            raise InputError(f"{self.where}: cannot read {name}: {exc.strerror or exc}") from None

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def blob(self, digest: str) -> bytes:
        """A metadata blob (index, manifest, config): read whole, so at most MAX_METADATA bytes."""
        with self.open(blob_name(digest)) as handle:
            data = handle.read(MAX_METADATA + 1)
        if len(data) > MAX_METADATA:
            raise InputError(f"{self.where}: blob {digest} is over {MAX_METADATA} bytes: not image metadata")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise InputError(f"{self.where}: blob {digest} does not match its digest (corrupt?)")
        return data


def blob_name(digest: str) -> str:
    """`blobs/ALGORITHM/HEX`; a digest that is not one (`sha256:../../etc/passwd`) never names a path."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise InputError(f"{digest!r} is not a digest (sha256:<64 hex digits>)")
    return "blobs/" + digest.replace(":", "/")


def directory(path: Path, where: str) -> ImageFiles:
    return ImageFiles(where, None, lambda name: open(path / name, "rb"))


@contextlib.contextmanager
def tarball(path: Path, where: str) -> Iterator[ImageFiles]:
    try:
        archive = tarfile.open(path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{where}: not a tar file ({exc})") from None
    with archive:
        try:
            listed = archive.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"{where}: cannot read the tar file ({exc})") from None
        members = {m.name.removeprefix("./"): m for m in listed if m.isfile()}
        yield ImageFiles(where, set(members), lambda name: archive.extractfile(members[name]))


@contextlib.contextmanager
def image_files(path: Path, where: str) -> Iterator[ImageFiles]:
    """A layout directory or a tarball, whichever `path` is."""
    if path.is_dir():
        yield directory(path, where)
    elif path.is_file():
        with tarball(path, where) as files:
            yield files
    else:
        raise InputError(f"{where}: no such OCI layout or image tarball")
