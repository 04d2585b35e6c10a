"""Read a `.deb`: an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*`.

Members may be compressed with xz, zstd, gzip or bzip2, or not at all. They are read in place
from the file and decompressed as a stream; file bodies go to a spool directory when one is given.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.common.errors import BuildError

AR_MAGIC = b"!<arch>\n"
READ = 1 << 20


@dataclass
class DebMember:
    """One entry of data.tar, path without the leading `./`; a file's body is in `data`, or spooled
    to the file `source` (read_deb with a spool directory)."""

    path: str
    kind: str        # "file" | "dir" | "symlink" | "hardlink"
    mode: int
    uid: int
    gid: int
    data: bytes = b""
    link: str = ""
    source: str | None = None
    size: int = 0
    md5: str = ""    # of the body (dpkg records conffiles' md5)


@dataclass
class Deb:
    control: str                            # the `control` file
    control_files: dict[str, tuple[int, bytes]]  # md5sums, conffiles, postinst... -> (mode, content)
    members: list[DebMember]                # data.tar entries, archive order
    skipped: list[str]                      # entries that cannot go into a layer (devices, fifos)


def read_deb(path: Path, name: str = "", spool: Path | None = None) -> Deb:
    """The package's control data and its data.tar entries. With `spool`, data.tar is read as a stream
    and each file's body copied to a file there, so memory does not grow with the package."""
    what = name or path.name
    with open(path, "rb") as handle:
        members = _ar_members(handle, what)
        if _read(handle, members.get("debian-binary", (0, 0))).strip()[:2] != b"2.":
            raise BuildError(f"{what}: not a Debian binary package")
        control_name = next((m for m in members if m.startswith("control.tar")), None)
        data_name = next((m for m in members if m.startswith("data.tar")), None)
        if control_name is None or data_name is None:
            raise BuildError(f"{what}: no control.tar or data.tar member")
        control_files: dict[str, tuple[int, bytes]] = {}
        with _tar(handle, members[control_name], control_name, what) as tar:
            for info in tar:
                if info.isfile():
                    control_files[info.name.removeprefix("./")] = (info.mode, tar.extractfile(info).read())
        if "control" not in control_files:
            raise BuildError(f"{what}: control.tar has no control file")
        control = control_files.pop("control")[1].decode("utf-8", "replace")
        out, skipped = [], []
        with _tar(handle, members[data_name], data_name, what) as tar:
            try:
                for info in tar:
                    member = _member(tar, info, spool / what if spool else None, len(out))
                    if member is None:
                        skipped.append(info.name.removeprefix("./").strip("/"))
                    elif member.path not in ("", "."):
                        out.append(member)
            except (lzma.LZMAError, OSError, EOFError, tarfile.TarError) as exc:
                raise BuildError(f"{what}: cannot read {data_name}: {exc}") from None
    return Deb(control, control_files, out, skipped)


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo, spool: Path | None, n: int) -> DebMember | None:
    path = info.name.removeprefix("./").strip("/")
    if info.isdir():
        return DebMember(path, "dir", info.mode, info.uid, info.gid)
    if info.issym():
        return DebMember(path, "symlink", 0o777, info.uid, info.gid, link=info.linkname)
    if info.islnk():
        return DebMember(path, "hardlink", info.mode, info.uid, info.gid,
                         link=info.linkname.removeprefix("./").strip("/"))
    if not info.isfile():
        return None
    body, digest = tar.extractfile(info), hashlib.md5()
    if spool is None:
        data = body.read()
        digest.update(data)
        return DebMember(path, "file", info.mode, info.uid, info.gid, data, size=len(data), md5=digest.hexdigest())
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / f"{n:06d}"
    with open(target, "wb") as out:
        while chunk := body.read(READ):
            digest.update(chunk)
            out.write(chunk)
    return DebMember(path, "file", info.mode, info.uid, info.gid, source=str(target), size=info.size,
                     md5=digest.hexdigest())


def _ar_members(handle: BinaryIO, what: str) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of each member of the ar archive."""
    if handle.read(len(AR_MAGIC)) != AR_MAGIC:
        raise BuildError(f"{what}: not an ar archive")
    out, offset = {}, len(AR_MAGIC)
    while len(header := handle.read(60)) == 60:
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        out[name] = (offset + 60, size)
        offset += 60 + size + (size % 2)
        handle.seek(offset)
    return out


def _read(handle: BinaryIO, where: tuple[int, int]) -> bytes:
    handle.seek(where[0])
    return handle.read(where[1])


class _Slice(io.RawIOBase):
    """One ar member of an open file, read in place."""

    def __init__(self, handle: BinaryIO, offset: int, size: int):
        self._handle, self._offset, self._left = handle, offset, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        self._handle.seek(self._offset)
        data = self._handle.read(min(len(buffer), self._left))
        buffer[:len(data)] = data
        self._offset += len(data)
        self._left -= len(data)
        return len(data)


def _tar(handle: BinaryIO, where: tuple[int, int], name: str, what: str) -> tarfile.TarFile:
    raw = io.BufferedReader(_Slice(handle, *where), READ)
    try:
        if name.endswith(".xz"):
            stream = lzma.open(raw)
        elif name.endswith(".zst"):
            import zstandard  # only for a .deb whose members are zstd

            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        elif name.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=raw)
        elif name.endswith(".bz2"):
            stream = bz2.BZ2File(raw)
        elif name.endswith(".tar"):
            stream = raw
        else:
            raise BuildError(f"{what}: unsupported member {name}")
        return tarfile.open(fileobj=stream, mode="r|")
    except (lzma.LZMAError, OSError, EOFError, tarfile.TarError) as exc:
        raise BuildError(f"{what}: cannot read {name}: {exc}") from None
