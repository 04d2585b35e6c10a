"""The content-addressed store shared by all builds on a machine.

    blobs/sha256/<hex>          blobs (layers, configs, manifests), named by their digest
    layers/<key>.json           layer key -> LayerRecord
    compressed/<diff_id>.<codec-id>.json   uncompressed layer -> compressed blob, per codec
    tmp/                        blobs being written, work directories (each locked by its writer)

Every write lands by rename, so a crash leaves either the whole entry or none; a temp file's writer
holds a lock on it, and a sweep removes only temps nobody holds (builder.store.sweep).
Builds hold a shared lock on `lock`, `cache gc` an exclusive one, so nothing a build uses is evicted;
building one layer holds an exclusive lock on its key, so two builds never compress the same layer twice.
Use is recorded as the entry's mtime, touched at most hourly (builder.store.entries).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Protocol

from builder.common.atomic import atomic_write_bytes
from builder.common.errors import BuildError
from builder.common.locks import lock_new
from builder.store import gc
from builder.store.entries import remove
from builder.store.limits import Limits, configured
from builder.store.sweep import LOCK_SUFFIX, sweep_work

TOUCH_EVERY_S = 3600  # a use moves an entry's mtime at most this often: one utime an hour, not one a read


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str     # sha256:... of the uncompressed tar
    digest: str      # sha256:... of the compressed blob
    size: int        # compressed size
    media_type: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


class BlobSource(Protocol):
    """Somewhere beyond this machine that may hold a blob by digest (builder.cache.remote.RemoteCache)."""

    def fetch_blob(self, digest: str, size: int | None) -> bool: ...


class Store:
    """`exclusive`: held alone (gc); else shared with other builds. `on_wait` is called if the lock is not free."""

    def __init__(self, root: Path, *, exclusive: bool = False, on_wait: Callable[[], None] | None = None):
        self.root = root
        self.elsewhere: BlobSource | None = None  # asked for a pinned input its origin no longer serves
        self.limits = configured()                # read now: a bad setting fails before any work, not after
        self.collected: gc.GcReport | None = None  # what the gc after this build evicted (None: none ran)
        self.used: set[Path] = set()  # entries this build read: the most recently used, whatever their mtime says
        for sub in ("blobs/sha256", "layers", "compressed", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._lock_handle = open(root / "lock", "a+b")
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self._lock_handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(self._lock_handle, mode)
        self.exclusive = exclusive
        sweep_work(root)

    def close(self, limits: Limits | None = None) -> None:
        """Release the store; then, if it is over its limits (`limits`, else the configured ones) and no other
        build holds it, evict the least recently used entries."""
        if self._lock_handle.closed:
            return
        try:
            limits = limits if limits is not None else self.limits
            if limits.any and gc.needed(self.root, limits) and self._try_exclusive():
                self.collected = gc.collect(self.root, limits, recent=self.used)
        finally:
            self._lock_handle.close()

    def _try_exclusive(self) -> bool:
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another build is using the store: the next one to finish alone collects
        return True

    # -- use ------------------------------------------------------------------------

    def touch(self, path: Path, st: os.stat_result | None = None) -> None:
        """Record a use of the entry at `path` (its mtime), at most once every TOUCH_EVERY_S."""
        self.used.add(path)
        try:
            st = st or path.stat()
            if time.time() - st.st_mtime > TOUCH_EVERY_S:
                os.utime(path)
        except OSError:
            pass  # a read-only store still serves; its entries just look older

    # -- work directories ---------------------------------------------------------------

    def work_dir(self, label: str) -> "WorkDir":
        """A new empty directory under tmp/, held by its lock file until released (or this process ends)."""
        path = self.root / "tmp" / f"{label}.{os.urandom(6).hex()}"
        fd = lock_new(path.with_name(path.name + LOCK_SUFFIX))
        path.mkdir()
        return WorkDir(path, fd)

    # -- blobs -----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64:
            raise BuildError(f"unsupported digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexdigest

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        self.touch(path, st)
        return size is None or st.st_size == size

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write_bytes(path, data, mode=0o444)
        return digest

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
            self.touch(self.blob_path(digest))
        except FileNotFoundError:
            raise BuildError(f"blob {digest} is missing from the store {self.root}") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            self.blob_path(digest).unlink(missing_ok=True)
            raise BuildError(f"blob {digest} in the store {self.root} is corrupt; it was removed, build again")
        return data

    def adopt(self, source: Path, digest: str, size: int) -> bool:
        """Take the blob `digest` from another store (hard-linked, else copied) once its bytes are checked;
        False when `source` is missing, of another size or not those bytes."""
        if self.has_blob(digest, size):
            return True
        try:
            if source.stat().st_size != size:
                return False
            hashed = hashlib.sha256()
            with open(source, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hashed.update(chunk)
        except OSError:
            return False
        if "sha256:" + hashed.hexdigest() != digest:
            return False
        tmp = self.root / "tmp" / f"{os.getpid()}.{os.urandom(4).hex()}.adopt"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)
        os.replace(tmp, self.blob_path(digest))
        return True

    def recover_blob(self, digest: str, size: int | None = None) -> bool:
        """Whether `elsewhere` had the blob (now in the store, verified) after its origin failed."""
        return self.elsewhere is not None and self.elsewhere.fetch_blob(digest, size)

    @contextlib.contextmanager
    def blob_writer(self) -> Iterator["BlobWriter"]:
        """A writer whose bytes become a blob named by their digest on `commit()`."""
        writer = BlobWriter(self)
        try:
            yield writer
        finally:
            writer.discard()

    # -- layer keys --------------------------------------------------------------

    def get_layer(self, key: str) -> LayerRecord | None:
        return self._layer_record(self.root / "layers" / f"{key}.json")

    def _layer_record(self, path: Path) -> LayerRecord | None:
        try:
            record = LayerRecord(**json.loads(path.read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if not self.has_blob(record.digest, record.size):
            return None
        self.touch(path)
        return record

    def put_layer(self, key: str, record: LayerRecord) -> None:
        atomic_write_bytes(self.root / "layers" / f"{key}.json", record.to_json())

    @contextlib.contextmanager
    def building(self, key: str) -> Iterator[None]:
        """Exclusive while one build produces the layer for `key`."""
        with open(self.root / "layers" / f"{key}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- compressed forms of an uncompressed layer ------------------------------------

    def get_compressed(self, diff_id: str, codec_id: str) -> LayerRecord | None:
        return self._layer_record(self._compressed_path(diff_id, codec_id))

    def put_compressed(self, codec_id: str, record: LayerRecord) -> None:
        atomic_write_bytes(self._compressed_path(record.diff_id, codec_id), record.to_json())

    def _compressed_path(self, diff_id: str, codec_id: str) -> Path:
        return self.root / "compressed" / f"{diff_id.removeprefix('sha256:')}.{codec_id}.json"

    # -- small JSON records (base image resolutions...) --------------------------------

    def get_record(self, kind: str, name: str) -> dict | None:
        path = self.root / kind / f"{name}.json"
        try:
            value = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        self.touch(path)
        return value

    def put_record(self, kind: str, name: str, value: dict) -> None:
        # Records are caches: a torn one after a crash reads as missing (get_record), so no fsync.
        atomic_write_bytes(self.root / kind / f"{name}.json", json.dumps(value, sort_keys=True).encode(),
                           fsync=False)


class WorkDir:
    """A directory under the store's tmp/ that no sweep removes while its lock file is held (by this object)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the directory, then its lock file (a directory without one is never live)."""
        remove(self.path)
        if self._fd is not None:
            remove(self.path.with_name(self.path.name + LOCK_SUFFIX))
            os.close(self._fd)
            self._fd = None


class BlobWriter:
    def __init__(self, store: Store):
        self._store = store
        self.tmp = store.root / "tmp" / f"blob.{os.urandom(8).hex()}"
        # Locked for as long as it lives, so a sweep never takes it; closed (unlocked) only once renamed or removed.
        self._handle: BinaryIO | None = os.fdopen(lock_new(self.tmp, os.O_WRONLY | os.O_TRUNC), "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self._hash.update(data)
            self._handle.write(data)
            self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self) -> str:
        digest = self.digest
        self._handle.flush()
        os.fsync(self._handle.fileno())
        os.chmod(self.tmp, 0o444)
        os.replace(self.tmp, self._store.blob_path(digest))
        self._handle.close()
        self._handle = None
        return digest

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        if self._handle is not None:
            self._handle.close()
            self._handle = None
