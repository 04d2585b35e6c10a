"""Reading a merged image filesystem from its layers: upper layers win, whiteouts hide."""

from __future__ import annotations

import pytest

from builder.layers.read import find_files, list_paths
from builder.layers.compress import Codec
from builder.common.errors import NotLocal
from builder.layers.tar import LayerItem, store_layer
from builder.store.store import Store


def layer(store: Store, files: dict[str, bytes]):
    items = [LayerItem(path, "file", 0o644, size=len(data), data=data) for path, data in sorted(files.items())]
    return store_layer(store, Codec("gzip", 1), items, 0)


def test_upper_layers_and_whiteouts(tmp_path):
    store = Store(tmp_path / "store")
    lower = layer(store, {"etc/a": b"a0", "etc/b": b"b0", "dir/x": b"x0", "keep/k": b"k0"})
    upper = layer(store, {"etc/.wh.a": b"", "etc/b": b"b1", "dir/.wh..wh..opq": b"", "dir/y": b"y1"})
    found = find_files(store, [lower, upper], lambda path: True)
    assert found == {"etc/b": b"b1", "dir/y": b"y1", "keep/k": b"k0"}
    assert find_files(store, [lower, upper], lambda p: p.startswith("etc/"), cache_name="etc") == {"etc/b": b"b1"}
    assert store.get_record("base-files", next((tmp_path / "store" / "base-files").iterdir()).stem)
    assert find_files(store, [lower, upper], lambda p: False, cache_name="etc") == {"etc/b": b"b1"}, "cached"
    store.close()


def test_one_pass_over_the_layers_answers_the_later_questions(tmp_path):
    store = Store(tmp_path / "store")
    lower = layer(store, {"etc/passwd": b"root:x:0:0::/root:/bin/sh\n", "usr/bin/tool": b"\x7fELF",
                          "usr/lib/python3/dist-packages/a-1.dist-info/METADATA": b"Name: a\nVersion: 1\n"})
    upper = layer(store, {"etc/group": b"root:x:0:\n",
                          "usr/lib/python3/dist-packages/a-1.dist-info/.wh.METADATA": b""})
    layers = [lower, upper]
    assert list_paths(store, layers, lambda p: p.startswith("usr/bin/")) == {"usr/bin/tool": "file"}
    for record in (lower, upper):  # from now on the layers cannot be read again
        store.blob_path(record.digest).unlink()
    assert find_files(store, layers, lambda p: p.startswith("etc/")) == {
        "etc/passwd": b"root:x:0:0::/root:/bin/sh\n", "etc/group": b"root:x:0:\n"}
    assert find_files(store, layers, lambda p: p.endswith("/METADATA")) == {}, "whiteouts hold in the memo too"
    assert set(list_paths(store, layers, lambda p: p.startswith("etc/"))) == {"etc/passwd", "etc/group"}
    with pytest.raises(NotLocal):  # a file no earlier pass kept needs the layers, and they are gone
        find_files(store, layers, lambda p: p == "usr/bin/tool")
    store.close()
