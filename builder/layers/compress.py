"""Layer compression with pinned, bundled codecs, so equal layers compress to equal bytes everywhere.

gzip uses ISA-L (`isal`), zstd uses the libzstd bundled in `zstandard`. Both are fed
fixed-size chunks: a streaming compressor's output may depend on how its input was split.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

CHUNK = 1 << 20

GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
# Header: magic, deflate, no flags, mtime 0, no extra flags, OS 255 ("unknown": no host leaks in).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    name: str
    level: int

    @property
    def media_type(self) -> str:
        return GZIP_MEDIA_TYPE if self.name == "gzip" else ZSTD_MEDIA_TYPE

    @property
    def version(self) -> str:
        if self.name == "gzip":
            import isal  # the codec in use only

            return f"isal-{isal.__version__}"
        import zstandard  # the codec in use only

        return f"zstd-{'.'.join(map(str, zstandard.ZSTD_VERSION))}"

    @property
    def cache_id(self) -> str:
        return f"{self.name}-{self.level}-{self.version}"

    def compressor(self) -> "ChunkedCompressor":
        return ChunkedCompressor(_GzipStream(self.level) if self.name == "gzip" else _zstd(self.level))


class _GzipStream:
    def __init__(self, level: int):
        from isal import isal_zlib  # ISA-L: only when a layer is compressed (a no-op build compresses nothing)

        self._zlib = isal_zlib
        self._deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0
        self._header_sent = False

    def compress(self, data: bytes) -> bytes:
        self._crc = self._zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._deflate.compress(data)
        if not self._header_sent:
            self._header_sent = True
            out = _GZIP_HEADER + out
        return out

    def flush(self) -> bytes:
        head = b"" if self._header_sent else _GZIP_HEADER
        return head + self._deflate.flush() + struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)


def _zstd(level: int) -> Compressor:
    import zstandard  # only for zstd layers

    return zstandard.ZstdCompressor(level=level, threads=0, write_checksum=False,
                                    write_content_size=False).compressobj()


class ChunkedCompressor:
    """Feeds the codec exactly CHUNK-sized pieces, whatever sizes it is given."""

    def __init__(self, inner: Compressor):
        self._inner = inner
        self._pending = bytearray()

    def compress(self, data: bytes) -> bytes:
        self._pending += data
        if len(self._pending) < CHUNK:
            return b""
        out = []
        view = memoryview(self._pending)
        whole = len(self._pending) - len(self._pending) % CHUNK
        for start in range(0, whole, CHUNK):
            out.append(self._inner.compress(bytes(view[start:start + CHUNK])))
        view.release()
        del self._pending[:whole]
        return b"".join(out)

    def flush(self) -> bytes:
        out = self._inner.compress(bytes(self._pending)) if self._pending else b""
        self._pending.clear()
        return out + self._inner.flush()


def decompressor_for(head: bytes):
    """A streaming decompressor for a blob starting with `head`, or None for an uncompressed tar."""
    if head[:2] == b"\x1f\x8b":
        import zlib  # only to read a gzip base layer

        return zlib.decompressobj(31)
    if head[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard  # only to read a zstd base layer

        return zstandard.ZstdDecompressor().decompressobj()
    return None
