"""fontconfig's cache files pointed at their directory's clamped mtime.

`fc-cache` (fontconfig's trigger) records in each cache file the mtime of the font directory it
describes, seconds and nanoseconds, and trusts the cache only while they match. A directory a
script created carries the time of the build, which the layer then clamps: the cache would differ
from one build to the next and be stale in the image. Setting the recorded time to the directory's
clamped one makes it both reproducible and valid.

Layout (struct _FcCache, 64-bit): magic, version, size, dir offset, ..., checksum (int, offset 48),
checksum_nano (int64, offset 56); the directory's name is a C string at the dir offset.
"""

from __future__ import annotations

import struct

MAGICS = (0xFC02FC04, 0xFC02FC05)


def cached_directory(data: bytes) -> str | None:
    """The directory a 64-bit little-endian cache file describes, None when it is not one."""
    if len(data) < 64:
        return None
    magic, _, size, dir_offset = struct.unpack_from("<IiqQ", data, 0)
    if magic not in MAGICS or size != len(data) or not 64 <= dir_offset < len(data):
        return None
    end = data.find(b"\0", dir_offset)
    return data[dir_offset:end].decode("utf-8", "surrogateescape") if end > dir_offset else None


def with_mtime(data: bytes, mtime: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<i", out, 48, (mtime + 2 ** 31) % 2 ** 32 - 2 ** 31)  # fontconfig keeps (int) st_mtime
    struct.pack_into("<q", out, 56, 0)
    return bytes(out)
