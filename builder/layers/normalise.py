"""Normalise a layer a container engine made, so that it is as reproducible as airbuild's own layers.

- entries sorted by path, user and group names empty, numeric uid/gid and modes kept
  (setuid bits too), timestamps clamped to SOURCE_DATE_EPOCH, PAX records only for
  long names and extended attributes (`security.capability`...);
- whiteouts (`.wh.NAME`, `.wh..wh..opq`) kept: they delete files of the layers below;
- volatile files dropped: logs, apt lists and caches, other tools' caches (VOLATILE);
- `/etc/shadow` password-change days the RUN wrote (today's) clamped to SOURCE_DATE_EPOCH's
  (empty at 0, which disables ageing, as shadow's own SOURCE_DATE_EPOCH support does);
- `.pyc` files compiled from a source in the same layer record the source's clamped mtime,
  so they stay valid;
- for a layer read from a directory (normalise_items: the system packages' scripts), Java
  keystores' entry dates clamped too (builder.layers.keystore), and fontconfig's caches pointed
  at their directory's clamped mtime (builder.layers.fontconfig).

Several engine layers can be merged into one (a WORKDIR's directory with the RUN after it).
File bodies are written to a staging directory the caller removes.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

from builder.layers.fontconfig import cached_directory, with_mtime
from builder.layers.keystore import clamp_dates
from builder.layers.whiteouts import is_whiteout, whiteout
from builder.layers.tar import LayerItem

VERSION = 1  # part of the key of every engine-built layer: bump when the output of this module changes

VOLATILE = (
    "var/log/**",                 # dpkg.log, apt/history.log, lastlog, faillog...
    "var/cache/apt/**",           # pkgcache.bin, downloaded .debs
    "var/lib/apt/lists/**",       # package indexes (and their dates)
    "var/cache/debconf/*-old",
    "var/cache/ldconfig/aux-cache",
    "root/.cache/**",             # pip, uv and other per-user caches
    "home/*/.cache/**",
)
_VOLATILE = re.compile("|".join(
    "(?:" + re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*") + ")" for p in VOLATILE) + r"\Z")

SHADOW = ("etc/shadow", "etc/shadow-")
_KIND = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
         tarfile.LNKTYPE: "hardlink"}


@dataclass
class _State:
    staging: Path
    epoch: int
    items: dict[str, LayerItem] = field(default_factory=dict)
    layer_of: dict[str, int] = field(default_factory=dict)        # which merged layer an entry came from
    original_mtimes: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # volatile paths, entries a layer cannot carry
    layer: int = 0
    bodies: int = 0

    def body(self) -> Path:
        self.bodies += 1
        return self.staging / f"{self.bodies:08d}"


def normalise(layers: Iterable[BinaryIO], staging: Path, epoch: int) -> tuple[list[LayerItem], list[str]]:
    """The merged, normalised entries of `layers` (tar streams, lowest first) and what was dropped."""
    staging.mkdir(parents=True, exist_ok=True)
    state = _State(staging, epoch)
    for state.layer, stream in enumerate(layers):
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                _add(state, archive, member)
    return _finish(state)


def normalise_items(items: Iterable[LayerItem], staging: Path, epoch: int) -> tuple[list[LayerItem], list[str]]:
    """The same rules for a layer read from a directory (builder.layers.overlay): bodies stay where
    they are, except those rewritten (shadow, .pyc), which go to `staging`."""
    staging.mkdir(parents=True, exist_ok=True)
    state = _State(staging, epoch)
    for item in items:
        _keep(state, item)
    _fix_keystores(state)
    _fix_font_caches(state)
    return _finish(state)


def _finish(state: _State) -> tuple[list[LayerItem], list[str]]:
    _drop_dangling_hardlinks(state)
    _fix_shadow(state)
    _fix_pyc(state)
    return [state.items[path] for path in sorted(state.items)], state.dropped


def _clean(name: str) -> str:
    name = posixpath.normpath("/" + name.removeprefix("./")).lstrip("/")
    return "" if name == "." else name


def _add(state: _State, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    path = _clean(member.name)
    if not path:
        return
    marker = whiteout(path)
    if marker is not None and marker.opaque:
        _forget_below(state, marker.directory + "/")
    elif marker is not None:
        _forget_below(state, marker.target)
        _forget_below(state, marker.target + "/")
    kind = _KIND.get(member.type)
    if kind is None:
        state.dropped.append(f"{path} (a device node or FIFO: not kept)")
        return
    if _volatile(path, kind):  # before its body is copied (apt's lists are tens of MB)
        state.dropped.append(path)
        state.items.pop(path, None)
        return
    link = _clean(member.linkname) if kind == "hardlink" else member.linkname if kind == "symlink" else ""
    xattrs = tuple(sorted((key.removeprefix("SCHILY.xattr."), value) for key, value in member.pax_headers.items()
                          if key.startswith("SCHILY.xattr.")))
    item = LayerItem(path, kind, member.mode & 0o7777, member.uid, member.gid, mtime=int(member.mtime),
                     link=link, xattrs=xattrs)
    if kind == "file":
        body = state.body()
        with open(body, "wb") as out:
            shutil.copyfileobj(archive.extractfile(member), out, 1 << 20)
        item = _with_body(item, body)
    _keep(state, item)


def _keep(state: _State, item: LayerItem) -> None:
    """Add `item` with its mtime clamped (the original kept for .pyc headers), unless it is volatile."""
    if _volatile(item.path, item.kind):
        state.dropped.append(item.path)
        state.items.pop(item.path, None)
        return
    mtime = item.mtime if item.mtime is not None else state.epoch
    state.items[item.path] = dataclasses.replace(item, mtime=min(mtime, state.epoch))
    state.layer_of[item.path] = state.layer
    state.original_mtimes[item.path] = mtime


def _volatile(path: str, kind: str) -> bool:
    return kind != "dir" and not is_whiteout(path) and _VOLATILE.match(path) is not None


def _with_body(item: LayerItem, body: Path) -> LayerItem:
    return dataclasses.replace(item, source=str(body), size=body.stat().st_size)


def _forget_below(state: _State, prefix: str) -> None:
    """Entries of an earlier merged layer at `prefix` (a path, or a directory ending in /) that a whiteout
    in a later one removes; whiteouts themselves stay, for the layers below."""
    doomed = [p for p in state.items if (p == prefix or (prefix.endswith("/") and p.startswith(prefix)))
              and state.layer_of[p] < state.layer and not is_whiteout(p)]
    for path in doomed:
        del state.items[path]


def _drop_dangling_hardlinks(state: _State) -> None:
    for path, item in list(state.items.items()):
        if item.kind == "hardlink" and state.items.get(item.link, LayerItem("", "dir", 0)).kind != "file":
            del state.items[path]
            state.dropped.append(f"{path} (a hard link to {item.link}, which was dropped)")


def _fix_shadow(state: _State) -> None:
    """Days the RUN wrote (today's, or yesterday's across midnight) become SOURCE_DATE_EPOCH's day."""
    day = state.epoch // 86400
    written = time.time() // 86400 - 1
    for path in SHADOW:
        item = state.items.get(path)
        if item is None or item.kind != "file":
            continue
        lines = Path(item.source).read_bytes().split(b"\n")
        for n, line in enumerate(lines):
            fields = line.split(b":")
            if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) > day and int(fields[2]) >= written:
                fields[2] = str(day).encode() if day else b""
                lines[n] = b":".join(fields)
        body = state.body()
        body.write_bytes(b"\n".join(lines))
        state.items[path] = _with_body(item, body)


def _fix_keystores(state: _State) -> None:
    """Java keystores (the trust store ca-certificates-java writes) with their entries dated SOURCE_DATE_EPOCH."""
    for path, item in list(state.items.items()):
        if item.kind != "file" or not (posixpath.basename(path) == "cacerts" or path.endswith((".jks", ".keystore"))):
            continue
        fixed = clamp_dates(Path(item.source).read_bytes(), state.epoch)
        if fixed is not None:
            body = state.body()
            body.write_bytes(fixed)
            state.items[path] = _with_body(item, body)


def _fix_font_caches(state: _State) -> None:
    """fontconfig caches of a directory in the layer record that directory's clamped mtime."""
    for path, item in list(state.items.items()):
        if item.kind != "file" or not path.startswith("var/cache/fontconfig/") or ".cache-" not in path:
            continue
        data = Path(item.source).read_bytes()
        directory = state.items.get((cached_directory(data) or "").lstrip("/"))
        if directory is not None and directory.kind == "dir":
            body = state.body()
            body.write_bytes(with_mtime(data, directory.mtime))
            state.items[path] = _with_body(item, body)


def _fix_pyc(state: _State) -> None:
    """Point a timestamp-based .pyc at its source's clamped mtime, when it was compiled from that source."""
    for path, item in state.items.items():
        if item.kind != "file" or not path.endswith(".pyc") or item.size < 16:
            continue
        source = state.items.get(_pyc_source(path))
        if source is None or source.kind != "file" or source.mtime == state.original_mtimes[source.path]:
            continue
        with open(item.source, "r+b") as handle:
            header = handle.read(16)
            if int.from_bytes(header[4:8], "little") != 0:  # hash-based: no timestamp
                continue
            if int.from_bytes(header[8:12], "little") != state.original_mtimes[source.path] & 0xFFFFFFFF:
                continue  # compiled from another version of the file: leave it stale
            handle.seek(8)
            handle.write((source.mtime & 0xFFFFFFFF).to_bytes(4, "little"))


def _pyc_source(path: str) -> str:
    directory, name = posixpath.split(path)
    if posixpath.basename(directory) == "__pycache__":
        return posixpath.join(posixpath.dirname(directory), name.split(".", 1)[0] + ".py")
    return path[:-1]
