"""Read a `.deb`: an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*`.

Members may be compressed with xz, zstd, gzip or bzip2, or not at all.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.common.errors import BuildError

AR_MAGIC = b"!<arch>\n"


@dataclass
class DebMember:
    """One entry of data.tar, path without the leading `./`."""

    path: str
    kind: str        # "file" | "dir" | "symlink" | "hardlink"
    mode: int
    uid: int
    gid: int
    data: bytes = b""
    link: str = ""


@dataclass
class Deb:
    control: str                            # the `control` file
    control_files: dict[str, tuple[int, bytes]]  # md5sums, conffiles, postinst... -> (mode, content)
    members: list[DebMember]                # data.tar entries, archive order
    skipped: list[str]                      # entries that cannot go into a layer (devices, fifos)


def read_deb(path: Path, name: str = "") -> Deb:
    what = name or path.name
    members = _ar_members(path.read_bytes(), what)
    if members.get("debian-binary", b"").strip()[:2] != b"2.":
        raise BuildError(f"{what}: not a Debian binary package (debian-binary is {members.get('debian-binary')!r})")
    control_name = next((m for m in members if m.startswith("control.tar")), None)
    data_name = next((m for m in members if m.startswith("data.tar")), None)
    if control_name is None or data_name is None:
        raise BuildError(f"{what}: no control.tar or data.tar member")
    control_files: dict[str, tuple[int, bytes]] = {}
    with _tar(members[control_name], control_name, what) as tar:
        for info in tar:
            if info.isfile():
                control_files[info.name.removeprefix("./")] = (info.mode, tar.extractfile(info).read())
    if "control" not in control_files:
        raise BuildError(f"{what}: control.tar has no control file")
    control = control_files.pop("control")[1].decode("utf-8", "replace")
    out, skipped = [], []
    with _tar(members[data_name], data_name, what) as tar:
        for info in tar:
            path = info.name.removeprefix("./").strip("/")
            if path in ("", "."):
                continue
            if info.isdir():
                out.append(DebMember(path, "dir", info.mode, info.uid, info.gid))
            elif info.issym():
                out.append(DebMember(path, "symlink", 0o777, info.uid, info.gid, link=info.linkname))
            elif info.islnk():
                out.append(DebMember(path, "hardlink", info.mode, info.uid, info.gid,
                                     link=info.linkname.removeprefix("./").strip("/")))
            elif info.isfile():
                out.append(DebMember(path, "file", info.mode, info.uid, info.gid, tar.extractfile(info).read()))
            else:
                skipped.append(path)
    return Deb(control, control_files, out, skipped)


def _ar_members(raw: bytes, what: str) -> dict[str, bytes]:
    if not raw.startswith(AR_MAGIC):
        raise BuildError(f"{what}: not an ar archive")
    out, offset = {}, len(AR_MAGIC)
    while offset + 60 <= len(raw):
        header = raw[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        offset += 60
        out[name] = raw[offset:offset + size]
        offset += size + (size % 2)
    return out


def _tar(data: bytes, name: str, what: str) -> tarfile.TarFile:
    try:
        if name.endswith(".xz"):
            data = lzma.decompress(data)
        elif name.endswith(".zst"):
            import zstandard  # only for a .deb whose members are zstd

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        elif name.endswith(".gz"):
            data = gzip.decompress(data)
        elif name.endswith(".bz2"):
            data = bz2.decompress(data)
        elif not name.endswith(".tar"):
            raise BuildError(f"{what}: unsupported member {name}")
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (lzma.LZMAError, OSError, EOFError, tarfile.TarError) as exc:
        raise BuildError(f"{what}: cannot read {name}: {exc}") from None
