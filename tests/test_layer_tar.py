"""Layer bytes: headers, compression and their independence from how the bytes were fed."""

from __future__ import annotations

import gzip
import random

import pytest
import zstandard

from builder.layers.compress import CHUNK, Codec
from builder.layers.tar import LayerItem, _header, _pax_header

ITEMS = [
    LayerItem("usr/local/airflow/dags/a.py", "file", 0o644, 50000, 0, 1234),
    LayerItem("usr/local", "dir", 0o755),
    LayerItem("x/link", "symlink", 0o777, link="../y"),
    LayerItem("x/hard", "hardlink", 0o644, link="x/a"),
    LayerItem("a" * 100, "file", 0o755, size=3),
    LayerItem("d" * 100, "dir", 0o755),            # 101 bytes with its slash: needs PAX
    LayerItem("dags/é.py", "file", 0o644, size=3),  # non-ASCII: needs PAX
    LayerItem("big", "file", 0o644, size=9 * 1024 ** 3),  # beyond ustar's size field
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: f"{i.kind}:{i.path[:20]}")
def test_fast_headers_are_tarfiles_bytes(item):
    assert _header(item, 1700000000) == _pax_header(item, 1700000000)


@pytest.mark.parametrize("codec", [Codec("gzip", 1), Codec("gzip", 3), Codec("zstd", 3)], ids=str)
def test_compressed_bytes_do_not_depend_on_write_sizes(codec):
    rng = random.Random(3)
    data = rng.randbytes(CHUNK) + b"airflow " * (CHUNK // 2) + rng.randbytes(1000)

    def compress(sizes):
        compressor, out, offset = codec.compressor(), [], 0
        while offset < len(data):
            step = sizes(offset)
            out.append(compressor.compress(data[offset:offset + step]))
            offset += step
        return b"".join(out) + compressor.flush()

    whole = compress(lambda _: len(data))
    assert compress(lambda _: 4096) == whole
    assert compress(lambda o: rng.randint(1, 3 * CHUNK)) == whole
    restored = gzip.decompress(whole) if codec.name == "gzip" else zstandard.ZstdDecompressor().decompressobj().decompress(whole)
    assert restored == data
