"""Reading a merged image filesystem from its layers: upper layers win, whiteouts hide."""

from __future__ import annotations

from builder.base_fs import find_files
from builder.compress import Codec
from builder.layer_tar import LayerItem, store_layer
from builder.store import Store


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
