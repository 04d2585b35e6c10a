"""The DAG bundle Astro serves a Deployment's DAGs from: a reproducible `.tar.gz` of `dags/`.

Its layout is the Astro CLI's (`astro deploy --dags`, which tars the DAG directory with its name
prepended): one entry per file and symlink, named as in the project (`dags/etl.py`,
`dags/reports/daily.py`), no directory entries, gzip. Its bytes depend only on the DAGs: entries
sorted, every mtime `SOURCE_DATE_EPOCH`, uid and gid 0 and no owner names, modes 0644 or 0755,
hard links stored as files, gzip through the pinned ISA-L with a fixed header (`layers.tar`,
`layers.compress`): the same DAGs give the same bytes on every machine.

It is made from the image's DAG layers, those the `dags` rule builds (one, or several when it splits them), from the files the project's
ignore rules allow (`.dockerignore` and Astro's defaults), so the bundle holds exactly what an image
deploy would put under the workdir's `dags/`, and what was validated. `.airflowignore` files travel
in it: Astro's DAG processor reads them there, as the validation did; the files they name are
kept, since DAGs import helper modules that `.airflowignore` only hides from parsing.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from builder.common.errors import InputError
from builder.layers.compress import Codec
from builder.layers.read import members
from builder.layers.tar import LayerItem, write_tar
from builder.store.store import LayerRecord, Store

CODEC = Codec("gzip", 3)  # ISA-L's strongest level: a bundle is small and goes up on every DAG deploy


@dataclass(frozen=True)
class Bundle:
    digest: str      # sha256:<hex> of the .tar.gz, a blob in the store
    size: int
    files: int       # entries (files and symlinks)

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")


def write_bundle(store: Store, layers: list[LayerRecord], workdir: str, epoch: int) -> Bundle:
    """The bundle of `layers`' files (none: no DAG files, an empty bundle), stored as a blob."""
    items = sorted((item for layer in layers for item in _items(store, layer, workdir)), key=lambda item: item.path)
    compressor = CODEC.compressor()
    with store.blob_writer() as blob:
        write_tar(items, lambda data: blob.write(compressor.compress(data)), epoch)
        blob.write(compressor.flush())
        digest = blob.commit()
        size = blob.size
    return Bundle(digest, size, len(items))


def _items(store: Store, layer: LayerRecord, workdir: str) -> list[LayerItem]:
    root = workdir.strip("/") + "/" if workdir.strip("/") else ""
    items: list[LayerItem] = []
    contents: dict[str, bytes] = {}  # layer path -> content, for hard links
    for member, open_member in members(store, layer):
        path = posixpath.normpath(member.name.lstrip("/").removeprefix("./"))
        if member.isdir():
            continue
        if not path.startswith(root):
            raise InputError(f"the `dags` rule puts {path} outside the workdir {workdir}: Astro's DAG bundle "
                             "holds only paths under it (give the rule `dest: \"{{ workdir }}/dags\"`)")
        name = path[len(root):]
        mode = 0o755 if member.mode & 0o100 else 0o644
        if member.issym():
            items.append(LayerItem(name, "symlink", 0o777, link=member.linkname))
        elif member.islnk():
            data = contents[posixpath.normpath(member.linkname.lstrip("/"))]
            items.append(LayerItem(name, "file", mode, size=len(data), data=data))
        elif member.isfile():
            data = contents[path] = open_member().read()
            items.append(LayerItem(name, "file", mode, size=len(data), data=data))
    return sorted(items, key=lambda item: item.path)
